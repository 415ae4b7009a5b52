"""Batch execution of the notebook series with papermill.

``nt2c notebooks run`` executes ``notebooks/NN_*.ipynb`` in order, each in a fresh ``python3`` kernel,
with the run profile injected into its ``parameters`` cell, writes the executed copies, and summarises
which notebooks passed and how long each took. A failing notebook is reported and the others still run.
With several parameter files the series runs once per file, each in its own run folder.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from nt2c.config import PROFILES, load_params
from nt2c.errors import ConfigError, InputError
from nt2c.io import read_json, write_json

__all__ = ["NotebookResult", "default_notebook_dir", "list_notebooks", "run_notebooks", "format_summary"]

#: seconds a single cell may run, per profile
CELL_TIMEOUT_S = {"smoke": 600, "quick": 1800, "full": 4 * 3600}


@dataclass
class NotebookResult:
    """Outcome of one notebook execution."""

    notebook: str
    dataset: str
    status: str  # "passed", "failed", "skipped"
    seconds: float
    output: str
    error: str = ""


def default_notebook_dir() -> Path:
    """``notebooks/`` beside the package (a source checkout), or ``$NT2C_NOTEBOOK_DIR``."""
    env = os.environ.get("NT2C_NOTEBOOK_DIR")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "notebooks"
    if not folder.is_dir():
        raise InputError(
            f"notebook folder {folder} not found; pass --notebooks DIR or set NT2C_NOTEBOOK_DIR."
        )
    return folder


def list_notebooks(folder: str | os.PathLike | None = None, only: list[str] | None = None) -> list[Path]:
    """List the ``NN_*.ipynb`` series in ``folder`` in order; ``only``: numbers or name prefixes to keep."""
    folder = Path(folder) if folder else default_notebook_dir()
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = [str(o) for o in only]
        books = [b for b in books if any(b.name.startswith(w.zfill(2) if w.isdigit() else w) for w in wanted)]
        if not books:
            raise ConfigError(f"--only {' '.join(wanted)} matches no notebook in {folder}.")
    if not books:
        raise InputError(f"no notebooks NN_*.ipynb in {folder}.")
    return books


def _declared_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def run_notebooks(
    *,
    profile: str = "quick",
    out: str | os.PathLike = "runs/notebooks",
    only: list[str] | None = None,
    params_files: list[str | os.PathLike] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "auto",
    cell_timeout_s: int | None = None,
    force: bool = False,
    log=print,
) -> list[NotebookResult]:
    """Execute the notebook series and return one result per notebook (and parameter set).

    Parameters
    ----------
    profile : {"smoke", "quick", "full"}
    out : path-like
        Output folder: ``out/executed/NN_name.ipynb`` and the run folder ``out/run`` (with ``params_files``:
        ``out/<stem>/executed`` and ``out/<stem>/run`` per file), plus ``out/summary.json`` and
        ``summary.md``.
    only : list of str, optional
        Notebook numbers or name prefixes to run.
    params_files : list of path-like, optional
        Experiment parameter files; the series runs once per file.
    cell_timeout_s : int, optional
        Limit for one cell (default depends on the profile).
    force : bool
        Re-run notebooks that passed before with the same settings.
    """
    import papermill

    if profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
    out = Path(out).resolve()
    books = list_notebooks(notebooks_dir, only)
    datasets: list[tuple[str, Path | None]] = [("default", None)]
    if params_files:
        datasets = []
        for pf in params_files:
            pf = Path(pf)
            load_params(pf)  # validate before running anything
            datasets.append((pf.stem, pf))
        stems = [d for d, _ in datasets]
        if len(set(stems)) != len(stems):
            raise ConfigError(f"parameter files must have distinct names, got {stems}.")
    summary_path = out / "summary.json"
    previous = {
        (r["dataset"], r["notebook"]): r
        for r in (read_json(summary_path)["results"] if summary_path.is_file() else [])
    }
    timeout = cell_timeout_s or CELL_TIMEOUT_S[profile]
    results: list[NotebookResult] = []
    for dataset, params_file in datasets:
        base = out if params_file is None else out / dataset
        run_dir = base / "run"
        executed = base / "executed"
        executed.mkdir(parents=True, exist_ok=True)
        if params_file is not None:
            from nt2c.run.rundir import RunDir

            RunDir(run_dir).init_params(params_file)
        for book in books:
            target = executed / book.name
            prev = previous.get((dataset, book.name))
            if (
                not force
                and prev
                and prev["status"] == "passed"
                and prev.get("profile") == profile
                and target.is_file()
            ):
                results.append(
                    NotebookResult(book.name, dataset, "skipped", 0.0, str(target), "passed before")
                )
                log(f"[{dataset}] {book.name}: passed before, skipped")
                continue
            declared = _declared_parameters(book)
            values = {
                "profile": profile,
                "run_dir": str(run_dir),
                "seed": seed,
                "device": device,
                "interactive": False,
            }
            parameters = {k: v for k, v in values.items() if k in declared}
            log(f"[{dataset}] {book.name}: running ({profile})")
            start = time.perf_counter()
            status, error = "passed", ""
            try:
                papermill.execute_notebook(
                    str(book),
                    str(target),
                    parameters=parameters,
                    kernel_name="python3",
                    execution_timeout=timeout,
                    progress_bar=False,
                    cwd=str(book.parent),
                    log_output=False,
                    request_save_on_cell_execute=True,
                )
            except Exception as exc:  # papermill raises PapermillExecutionError, timeouts, dead kernels
                status = "failed"
                error = _short_error(exc)
            seconds = time.perf_counter() - start
            results.append(NotebookResult(book.name, dataset, status, seconds, str(target), error))
            log(f"[{dataset}] {book.name}: {status} in {seconds:.1f} s" + (f" -- {error}" if error else ""))
            _save_summary(summary_path, results, previous, profile)
    _save_summary(summary_path, results, previous, profile)
    return results


def _short_error(exc: BaseException) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    text = f"{name}: {value}".strip()
    if not text or text == f"{name}:":
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text.splitlines()[0][:300] if text else name


def _save_summary(path: Path, results: list[NotebookResult], previous: dict, profile: str) -> None:
    merged = dict(previous)
    for r in results:
        if r.status != "skipped":
            merged[(r.dataset, r.notebook)] = {**asdict(r), "profile": profile}
    rows = sorted(merged.values(), key=lambda r: (r["dataset"], r["notebook"]))
    write_json(path, {"results": rows})
    (path.parent / "summary.md").write_text(
        format_summary(
            [
                NotebookResult(
                    **{k: r[k] for k in ("notebook", "dataset", "status", "seconds", "output", "error")}
                )
                for r in rows
            ]
        )
        + "\n"
    )


def format_summary(results: list[NotebookResult]) -> str:
    """Format the results as a Markdown table of notebook, dataset, status and time."""
    lines = ["| dataset | notebook | status | time (s) | error |", "|---|---|---|---:|---|"]
    for r in results:
        lines.append(
            f"| {r.dataset} | {r.notebook} | {r.status} | {r.seconds:.1f} | {r.error.replace('|', '/')} |"
        )
    failed = sum(r.status == "failed" for r in results)
    lines.append("")
    lines.append(f"{len(results) - failed} passed or skipped, {failed} failed")
    return "\n".join(lines)
