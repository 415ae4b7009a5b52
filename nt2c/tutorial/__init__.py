"""What the notebook series needs around the pipeline.

* :mod:`.notebook` -- :func:`setup_notebook`, the first code cell of every notebook;
* :mod:`.runner` -- ``nt2c notebooks run``: the series with papermill.
"""

from nt2c.tutorial.notebook import setup_notebook, shared_data_dir

__all__ = ["setup_notebook", "shared_data_dir"]
