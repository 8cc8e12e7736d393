"""``--scheduler``: a local dask cluster started for the run, or a running one.

``local`` or ``local:N`` starts ``N`` (default 2) single-threaded worker processes on
this machine; an address (``tcp://host:8786``) connects to a scheduler already
running, e.g. one that dask-jobqueue started on a SLURM cluster (its workers must
see the inputs and the output's folder at the same paths). dask is imported here only.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from ..core.errors import InputError, SegAnyError

DEFAULT_LOCAL_WORKERS = 2
CONNECT_TIMEOUT_S = 10


class SchedulerError(SegAnyError, ConnectionError):
    """The dask scheduler named by ``--scheduler`` cannot be reached."""


def parse_scheduler(text: str) -> tuple[str, int | str]:
    """``("local", n_workers)`` or ``("address", address)``.

    Raises
    ------
    InputError
        ``local:`` followed by anything but a positive whole number.
    """
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(DEFAULT_LOCAL_WORKERS)
        if not count.isdigit() or int(count) < 1:
            raise InputError(
                f"--scheduler {text!r}: give local:N with N worker processes, e.g. local:4."
            )
        return "local", int(count)
    return "address", text


@contextlib.contextmanager
def dask_client(text: str, timeout_s: float | None = None) -> Iterator[object]:
    """A ``distributed.Client`` for ``--scheduler text``, closed (with a cluster it
    started) when the block ends; the dashboard's link goes to stderr.

    Raises
    ------
    SchedulerError
        The address does not answer within ``timeout_s`` seconds (default
        ``CONNECT_TIMEOUT_S``).
    """
    from distributed import Client

    kind, value = parse_scheduler(text)
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    cluster = None
    if kind == "local":
        cluster = _local_cluster(int(value))
        client = Client(cluster)
    else:
        try:
            client = Client(str(value), timeout=timeout_s)
        except (OSError, TimeoutError, ValueError) as error:
            raise SchedulerError(
                f"No dask scheduler answered at {value} within {timeout_s:g} s ({error}). "
                "Start it first (e.g. dask-jobqueue's SLURMCluster, or `dask scheduler`), "
                "check the address, or run here with --scheduler local."
            ) from error
    _announce(client, local=cluster is not None)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(n_workers: int):
    """``n_workers`` single-threaded worker processes on this machine.

    dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536`` in their workers, which made a
    built-in-model unit 1.8x slower here (1.15 s against 0.65 s per 512 x 512 plane):
    torch's large short-lived buffers go back to the system and are faulted in again
    each time. The workers started here keep glibc's own rule.
    """
    import dask
    from distributed import LocalCluster

    unset = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(unset):
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )


def _announce(client, local: bool) -> None:
    """The dashboard's link on stderr (a local one needs bokeh, not a dependency)."""
    import importlib.util

    note = ""
    if local and importlib.util.find_spec("bokeh") is None:
        note = " (install bokeh to see it)"
    workers = len(client.nthreads())
    sys.stderr.write(
        f"napari-segany: dask: {workers} workers, dashboard {client.dashboard_link}{note}\n"
    )
