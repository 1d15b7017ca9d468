"""The coordinator: the work-unit state machine over a database, and its daemons' passes.

Experiment from preset -> work units -> lease -> report -> validate -> assimilate -> continuation,
each state change one transaction. The same code serves every transport (local, Ray, HTTP).
"""

from typing import TYPE_CHECKING

from mlc._lazy import lazy_exports

if TYPE_CHECKING:
    from mlc.coordinator._assimilator import assimilate_valid
    from mlc.coordinator._daemons import DAEMONS, heartbeats
    from mlc.coordinator._db import connect, sqlite_url, transaction, utcnow
    from mlc.coordinator._experiments import (
        Experiment,
        build_shared_data,
        create_experiment,
        get_experiment,
        list_experiments,
        move_dataset,
        stored_network_ids,
    )
    from mlc.coordinator._hosts import Host, authenticate_host, host_owner, list_hosts, register_host
    from mlc.coordinator._overview import (
        ExperimentOverview,
        TaskCounts,
        experiment_overviews,
        server_overview,
        set_experiment_queue,
        set_experiment_state,
    )
    from mlc.coordinator._scheduler import (
        DEFAULT_MAX_ATTEMPTS,
        ReportOutcome,
        apply_transitions,
        extend_leases,
        lease_work,
        release_leases,
        report_result,
        results_of,
        take_over_leases,
        unit_for_upload,
        was_leased_to,
        work_remaining,
    )
    from mlc.coordinator._schema import ExperimentState, HostTrust, NetworkState, Verdict, WUState
    from mlc.coordinator._serverdata import ServerData
    from mlc.coordinator._service import CoordinatorService
    from mlc.coordinator._status import ExperimentStatus, experiment_status
    from mlc.coordinator._transition import Change, ResultView, UnitView, transition
    from mlc.coordinator._trust import distrust_reporter, is_trusted
    from mlc.coordinator._validator import validate_pending

_EXPORTS = {
    "distrust_reporter": "_trust",
    "is_trusted": "_trust",
    "HostTrust": "_schema",
    "set_experiment_queue": "_overview",
    "work_remaining": "_scheduler",
    "unit_for_upload": "_scheduler",
    "results_of": "_scheduler",
    "ExperimentOverview": "_overview",
    "TaskCounts": "_overview",
    "experiment_overviews": "_overview",
    "server_overview": "_overview",
    "set_experiment_state": "_overview",
    "Host": "_hosts",
    "authenticate_host": "_hosts",
    "host_owner": "_hosts",
    "list_hosts": "_hosts",
    "register_host": "_hosts",
    "was_leased_to": "_scheduler",
    "CoordinatorService": "_service",
    "ExperimentState": "_schema",
    "extend_leases": "_scheduler",
    "heartbeats": "_daemons",
    "DAEMONS": "_daemons",
    "assimilate_valid": "_assimilator",
    "connect": "_db",
    "sqlite_url": "_db",
    "transaction": "_db",
    "utcnow": "_db",
    "Experiment": "_experiments",
    "build_shared_data": "_experiments",
    "create_experiment": "_experiments",
    "get_experiment": "_experiments",
    "list_experiments": "_experiments",
    "move_dataset": "_experiments",
    "stored_network_ids": "_experiments",
    "DEFAULT_MAX_ATTEMPTS": "_scheduler",
    "ReportOutcome": "_scheduler",
    "apply_transitions": "_scheduler",
    "lease_work": "_scheduler",
    "release_leases": "_scheduler",
    "report_result": "_scheduler",
    "take_over_leases": "_scheduler",
    "NetworkState": "_schema",
    "Verdict": "_schema",
    "WUState": "_schema",
    "ServerData": "_serverdata",
    "ExperimentStatus": "_status",
    "experiment_status": "_status",
    "Change": "_transition",
    "ResultView": "_transition",
    "UnitView": "_transition",
    "transition": "_transition",
    "validate_pending": "_validator",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "Change",
    "CoordinatorService",
    "DAEMONS",
    "DEFAULT_MAX_ATTEMPTS",
    "Experiment",
    "ExperimentOverview",
    "ExperimentState",
    "ExperimentStatus",
    "Host",
    "HostTrust",
    "NetworkState",
    "ReportOutcome",
    "ResultView",
    "ServerData",
    "TaskCounts",
    "UnitView",
    "Verdict",
    "WUState",
    "apply_transitions",
    "assimilate_valid",
    "authenticate_host",
    "build_shared_data",
    "connect",
    "create_experiment",
    "distrust_reporter",
    "experiment_overviews",
    "experiment_status",
    "extend_leases",
    "get_experiment",
    "heartbeats",
    "host_owner",
    "is_trusted",
    "lease_work",
    "list_experiments",
    "list_hosts",
    "move_dataset",
    "register_host",
    "release_leases",
    "report_result",
    "results_of",
    "server_overview",
    "set_experiment_queue",
    "set_experiment_state",
    "sqlite_url",
    "stored_network_ids",
    "take_over_leases",
    "transaction",
    "transition",
    "unit_for_upload",
    "utcnow",
    "validate_pending",
    "was_leased_to",
    "work_remaining",
]
