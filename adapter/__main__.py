"""`python -m adapter`: run the adaptation worker (the same as `ttrv worker`)."""

from adapter.settings import WorkerSettings
from adapter.worker import run_worker
from core.settings import read_settings

if __name__ == "__main__":
    run_worker(read_settings(WorkerSettings, "ttrv worker"))
