"""The frame every stage runs in: the run directory, the stage registry and the whole pipeline.

* :mod:`.rundir` -- :class:`RunDir`: ``RUN/params.yaml``, the stage folders, stamps;
* :mod:`.stages` -- the registry of stages, :func:`run_stage` (dependencies, resume, stamps);
* :mod:`.pipeline` -- :func:`run_pipeline` (``nt2c run``): every stage, then denoising and the report;
* :mod:`.distributed` -- the ``torchrun`` helpers (ranks, barriers, sharding).
"""

from nt2c.run.rundir import RunDir
from nt2c.run.stages import STAGES, Stage, run_stage, stage_status

__all__ = ["RunDir", "STAGES", "Stage", "run_stage", "stage_status"]
