"""The composition root: what a command or the worker runs on, built from one ``Settings``.

``Root`` turns the settings (``ledger.adapters.settings``: every ``LEDGER_*`` variable) into
the store's settings, the application with its cache, the read models' database, and the
keyword arguments of the jobs (their batch sizes and processes).  Below it nothing reads the
environment: the command line makes one Root per run (``entrypoints.session``), the worker
gets its application, views and job options from the same one.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ledger.adapters.settings import Settings
from ledger.adapters.store import persistence_env, redact
from ledger.service.app import LedgerApp
from ledger.service.cache import AggregateCache

if TYPE_CHECKING:
    from ledger.domain.interest import Charge
    from projections.sql import ViewDatabase
    from workers.interest import InterestRun
    from workers.sweep import SweepRun


@dataclass(frozen=True)
class Root:
    settings: Settings

    @classmethod
    def load(cls, **overrides: Any) -> "Root":
        """From the environment, ``overrides`` first (a bad value: ``SettingsError``)."""
        return cls(Settings.load(**overrides))

    def on(self, url: str) -> "Root":
        """The same settings on another store (the demo's own)."""
        return Root(self.settings.model_copy(update={"database_url": url}))

    # --- the store -----------------------------------------------------------------------------
    def store_env(self, read_only: bool = False) -> dict[str, str]:
        """eventsourcing's settings for the store (``StoreError`` for a URL that is none)."""
        return persistence_env(self.settings.database_url, read_only, self.settings.store_environ())

    def open_app(self, env: dict[str, str] | None = None) -> LedgerApp:
        """The application on the store (``env``: ``store_env()`` made already), its cache
        holding LEDGER_CACHE_AGGREGATES aggregates."""
        app = LedgerApp.open(self.store_env() if env is None else env)
        app.cache = AggregateCache(app.repository, self.settings.cache_aggregates)  # still empty: none was loaded
        return app

    def open_views(self, read_only: bool = False) -> "ViewDatabase":
        from projections.sql import ViewDatabase

        return ViewDatabase(self.store_env(read_only))

    # --- the jobs ------------------------------------------------------------------------------
    @property
    def job_options(self) -> dict[str, dict[str, Any]]:
        """Each job's keyword arguments from the settings: ``interest`` for
        ``workers.interest.run_interest``, ``sweep`` for ``workers.sweep.run_sweep``,
        ``projections`` for ``projections.runner.run``."""
        s = self.settings
        return {"interest": {"batch_accounts": s.interest_batch_accounts},
                "sweep": {"batch_accounts": s.sweep_batch_accounts, "processes": s.sweep_processes,
                          "parallel_from": s.sweep_parallel_from},
                "projections": {"batch_events": s.projection_batch}}

    def run_interest(self, app: LedgerApp, at: datetime, **kwargs: Any) -> "InterestRun":
        from workers.interest import run_interest

        return run_interest(app, at, **kwargs, **self.job_options["interest"])

    def interest_charges(self, app: LedgerApp, run: "InterestRun", **kwargs: Any) -> Iterator["Charge"]:
        """``workers.interest.charging``: the run's charges as they are committed."""
        from workers.interest import charging

        return charging(app, run, **kwargs, **self.job_options["interest"])

    def run_sweep(self, app: LedgerApp, at: datetime, **kwargs: Any) -> "SweepRun":
        from workers.sweep import run_sweep

        return run_sweep(app, at, **kwargs, **self.job_options["sweep"])

    def project(self, app: LedgerApp, db: "ViewDatabase", **kwargs: Any) -> int:
        """Bring the read models up to the end of the log (``projections.runner.run``)."""
        from projections import runner

        return runner.run(app, db, **kwargs, **self.job_options["projections"])

    def publish(self, stopping: Any, **kwargs: Any) -> Any:
        """`ledger worker --publish`: ``bus.relay`` on its own application and connection,
        to LEDGER_NATS_URL, until ``stopping`` (a threading.Event) is set."""
        from bus.relay import relay

        app, views = self.open_app(), self.open_views()
        try:
            return relay(app, views, stopping, url=self.settings.nats_url, **kwargs)
        finally:
            views.close()
            app.close()

    def consumer(self, clock: Callable[[], datetime], **options: Any) -> Callable[[Callable[[], bool]], dict[str, Any]]:
        """`ledger consume` on an application of its own, on LEDGER_NATS_URL, with its defaults
        (``options``: others, fields of ``bus.consume.Options``): the loop the worker runs with
        ``--consume``."""
        def run(stop: Callable[[], bool]) -> dict[str, Any]:
            from bus.consume import Options, consume

            allowance = self.settings.future_allowance
            app = self.open_app()
            try:
                return consume(lambda objs: app.apply(objs, clock, lambda: clock() + allowance),
                               Options(url=self.settings.nats_url, **options), stop).as_dict()
            finally:
                app.close()
        return run

    def serve(self, publish: dict[str, Any] | None = None, consume: bool = False) -> dict[str, Any] | None:
        """`ledger worker`: open the store and its read models, then run the scheduled jobs
        (with ``publish``, the event relay with those options; with ``consume``, the bus's
        consumer) until a signal; None after one JSON error line when the store cannot be opened."""
        from workers.scheduler import now, open_store, run_worker

        opened = open_store(self.open_app, lambda: self.open_views(), redact(self.settings.database_url))
        if opened is None:
            return None
        app, views = opened
        try:
            publisher = (lambda stopping: self.publish(stopping, **publish)) if publish is not None else None
            return run_worker(app, views, publisher, {"consume": self.consumer(now)} if consume else None,
                              **self.job_options)
        finally:
            views.close()
            app.close()
