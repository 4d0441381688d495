"""Settings from MLSVC_* environment variables, with embedded defaults under MLSVC_HOME."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from mlsvc.security.sigv4 import Credentials


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Settings:
    """Everything mlsvc reads from its environment; build it with ``Settings.from_env()``."""

    home: Path
    database_url: str
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    mlflow_artifact_root: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    job_lease_s: float = 60.0
    job_max_attempts: int = 3
    job_poll_s: float = 0.1  # an idle worker's look for a job: one indexed SELECT, no lock taken
    local_roots: tuple[Path, ...] = field(default_factory=tuple)
    api_key: str | None = None
    max_predict_records: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    max_record_bytes: int = 1024 * 1024
    batch_processes: int = 1
    examples: bool = False
    max_in_flight: int = 32
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    allow_anonymous: bool = False
    # One line per request (method, path, status, duration, request id) in the API's log; MLSVC_ACCESS_LOG=0 turns
    # it off (behind a proxy that logs them already, or on a hot predict path).
    access_log: bool = True
    # A Dask scheduler (tcp://host:8786) to score batch partitions on; None: the worker's own threads.
    dask_scheduler: str | None = None
    partition_bytes: int = 64 * 1024 * 1024  # a large input file is cut into parts of about this size for Dask
    # Signs the digest record of each model version (MLSVC_SECRET_KEY), so that a record altered in the metadata
    # store is refused too. Never printed: kept out of repr and describe().
    secret_key: str | None = field(default=None, repr=False)
    # The database servers SQL datasources may query. A caller must not make the server connect wherever it likes
    # (another host's database, a port on the server's own network), so the operator names them:
    # MLSVC_RDS_INSTANCES, "name=host:port,…": the MySQL / MariaDB server each Amazon RDS InstanceIdentifier (a
    # request's "instance" with engine mysql) names; port 3306 when left out.
    rds_instances: dict[str, tuple[str, int]] = field(default_factory=dict)
    # MLSVC_REDSHIFT_CLUSTERS, the same for a Redshift ClusterIdentifier (engine postgresql): servers that speak
    # PostgreSQL's protocol; port 5439 (Redshift's) when left out.
    redshift_clusters: dict[str, tuple[str, int]] = field(default_factory=dict)
    # MLSVC_SQL_HOSTS, "host[:port],…": the hosts a native request may name directly (host and port); an entry
    # without a port allows any, "*" any host. None by default: a caller names a configured instance.
    sql_hosts: tuple[str, ...] = ()
    # MLSVC_PUBLIC_URL: the URL clients reach this service at (behind a proxy or TLS), which real-time endpoints
    # name; unset, the URL a request came in at.
    public_url: str | None = None
    # The access keys the Amazon ML API (at /) accepts SigV4 signatures from (MLSVC_AWS_CREDENTIALS =
    # "AKID:SECRET,AKID2:SECRET2"); none: that API is open. Secrets never printed: kept out of repr and describe().
    aws_credentials: Credentials = field(default_factory=Credentials, repr=False)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("MLSVC_HOME", ".mlsvc")).expanduser().resolve()
        tracking = _env("MLSVC_MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        # Local files the API may read and write: the folder mlsvc starts in, unless configured ("/" allows any
        # path). A caller must not reach /etc/passwd by naming it, nor mlsvc's own files (see ``own_files``).
        roots = os.environ.get("MLSVC_LOCAL_ROOTS", "") or os.getcwd()
        return cls(
            home=home,
            database_url=_env("MLSVC_DATABASE_URL", f"sqlite:///{home / 'mlsvc.db'}"),
            mlflow_tracking_uri=tracking,
            mlflow_registry_uri=_env("MLSVC_MLFLOW_REGISTRY_URI", tracking),
            mlflow_artifact_root=_env("MLSVC_MLFLOW_ARTIFACT_ROOT", (home / "mlartifacts").as_uri()),
            host=_env("MLSVC_HOST", "127.0.0.1"),
            port=int(_env("MLSVC_PORT", "8080")),
            workers=int(_env("MLSVC_WORKERS", "2")),
            job_lease_s=float(_env("MLSVC_JOB_LEASE_S", "60")),
            job_max_attempts=int(_env("MLSVC_JOB_MAX_ATTEMPTS", "3")),
            job_poll_s=float(_env("MLSVC_JOB_POLL_S", "0.1")),
            local_roots=tuple(Path(p).expanduser().resolve() for p in roots.split(os.pathsep) if p.strip()),
            api_key=os.environ.get("MLSVC_API_KEY") or None,
            max_predict_records=int(_env("MLSVC_MAX_PREDICT_RECORDS", "1000")),
            max_body_bytes=int(_env("MLSVC_MAX_BODY_BYTES", str(10 * 1024 * 1024))),
            max_record_bytes=int(_env("MLSVC_MAX_RECORD_BYTES", str(1024 * 1024))),
            batch_processes=int(_env("MLSVC_BATCH_PROCESSES", "0"))
            or _cores_per_worker(int(_env("MLSVC_WORKERS", "2"))),
            examples=_env("MLSVC_EXAMPLES", "0") == "1",
            max_in_flight=int(_env("MLSVC_MAX_IN_FLIGHT", "32")),
            allowed_hosts=_allowed_hosts(os.environ.get("MLSVC_ALLOWED_HOSTS", ""), _env("MLSVC_HOST", "127.0.0.1")),
            allow_anonymous=_env("MLSVC_ALLOW_ANONYMOUS", "0") == "1",
            access_log=_env("MLSVC_ACCESS_LOG", "1") != "0",
            dask_scheduler=os.environ.get("MLSVC_DASK_SCHEDULER", "").strip() or None,
            partition_bytes=int(_env("MLSVC_PARTITION_BYTES", str(64 * 1024 * 1024))),
            secret_key=os.environ.get("MLSVC_SECRET_KEY") or None,
            rds_instances=_addresses("MLSVC_RDS_INSTANCES", 3306),
            redshift_clusters=_addresses("MLSVC_REDSHIFT_CLUSTERS", 5439),
            sql_hosts=tuple(h.strip().lower() for h in os.environ.get("MLSVC_SQL_HOSTS", "").split(",") if h.strip()),
            aws_credentials=Credentials.parse(os.environ.get("MLSVC_AWS_CREDENTIALS", "")),
            public_url=os.environ.get("MLSVC_PUBLIC_URL", "").strip().rstrip("/") or None,
        )

    def own_files(self) -> tuple[str, ...]:
        """Where mlsvc keeps its own state (MLSVC_HOME, the metadata and MLflow databases, MLflow's artifacts):
        local paths and s3:// prefixes that are never read or written as data, whatever the roots allow."""
        places = [str(self.home), self.mlflow_artifact_root]
        places += [self.database_url, self.mlflow_tracking_uri, self.mlflow_registry_uri]
        return tuple(dict.fromkeys(p for p in (_own_place(place) for place in places) if p))

    def auth_mode(self) -> str:
        if self.api_key:
            return "an API key is required (MLSVC_API_KEY)"
        if self.allow_anonymous:
            return "none: anyone who can reach the port may call (MLSVC_ALLOW_ANONYMOUS=1)"
        return "none (serving on loopback only)"

    def refusal_to_serve(self) -> str | None:
        """Why ``mlsvc serve`` must not start with these settings, if it must not: reachable from other hosts
        with no API key, unless anonymous access was asked for."""
        if is_loopback(self.host) or self.api_key or self.allow_anonymous:
            return None
        return (
            f"mlsvc will not serve on {self.host} without an API key: anyone who can reach the port could read "
            "data, train and delete. Set MLSVC_API_KEY, or MLSVC_ALLOW_ANONYMOUS=1 to serve without one on purpose"
        )

    def _amazon_ml_access(self) -> str:
        """How Amazon ML's API at / takes callers, for the start-up lines."""
        if not self.aws_credentials and self.api_key:
            return "refused: MLSVC_API_KEY is set and no MLSVC_AWS_CREDENTIALS to verify signatures against"
        return self.aws_credentials.describe()

    def describe(self, role: str) -> str:
        """The lines printed at start-up so a person knows what this process is and where its data lives."""
        roots = ", ".join(str(r) for r in self.local_roots) or "any local path"
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS (default)"
        return "\n".join(
            [
                f"role             {role}",
                f"mlsvc home       {self.home}",
                f"metadata store   {_redact(self.database_url)}",
                f"mlflow tracking  {_redact(self.mlflow_tracking_uri)}",
                f"mlflow artifacts {self.mlflow_artifact_root}",
                f"s3 endpoint      {endpoint}",
                f"local data roots {roots}",
                f"authentication   {self.auth_mode()}",
                f"amazon ml api    {self._amazon_ml_access()}",
                f"allowed hosts    {', '.join(self.allowed_hosts)}",
                f"sql databases    {self._sql_places()}",
                f"access log       {'a line per request' if self.access_log else 'off (MLSVC_ACCESS_LOG=0)'}",
                f"model digests    {'signed with MLSVC_SECRET_KEY' if self.secret_key else 'not signed'}",
                f"batch scoring    {_redact(self.dask_scheduler) if self.dask_scheduler else 'this worker (threads)'}"
                + (f", in parts of {self.partition_bytes // 2**20} MiB" if self.dask_scheduler else ""),
            ]
        )

    def _sql_places(self) -> str:
        """The database servers SQL datasources may query, for ``describe``."""
        named = (("rds instances", self.rds_instances), ("redshift clusters", self.redshift_clusters))
        parts = [f"{kind} " + ", ".join(f"{n}={h}:{p}" for n, (h, p) in to.items()) for kind, to in named if to]
        hosts = ", ".join(self.sql_hosts) or "none named directly (MLSVC_SQL_HOSTS)"
        return "; ".join([*parts, f"hosts {hosts}"])


def is_loopback(host: str) -> bool:
    """Whether a bind address or a Host name stays on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _allowed_hosts(configured: str, bind: str) -> tuple[str, ...]:
    """The Host names requests may carry: as configured ('*' for any); by default the loopback names when
    bound to a loopback address (so a web page cannot drive a local service through DNS rebinding), else any."""
    if configured.strip():
        return tuple(h.strip().lower() for h in configured.split(",") if h.strip())
    return LOOPBACK_NAMES if is_loopback(bind) else ("*",)


def split_host_port(address: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 address as (host lower-cased, port or None); ValueError when
    the port is not a port."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return host.lower(), int(port) if port is not None else None


def _addresses(variable: str, default_port: int) -> dict[str, tuple[str, int]]:
    """A "name=host:port,…" variable as {name: (host, port)}; a value that is not so stops the process, saying
    what is wrong."""
    found: dict[str, tuple[str, int]] = {}
    for item in os.environ.get(variable, "").split(","):
        if not item.strip():
            continue
        name, sep, address = (part.strip() for part in item.partition("="))
        if not (sep and name and address):
            raise ValueError(f"{variable}: {item.strip()!r} is not name=host:port")
        try:
            host, port = split_host_port(address)
        except ValueError as exc:
            raise ValueError(f"{variable}: {name}: {exc}") from None
        found[name] = (host, port or default_port)
    return found


def _own_place(place: str) -> str | None:
    """A local path or s3:// prefix from a path, a file:// or s3:// URI or a SQLite URL; None for a server."""
    if place.startswith("sqlite:///"):
        return place.removeprefix("sqlite:///") or None
    if place.startswith("file://"):
        return unquote(place.removeprefix("file://"))
    if place.startswith("s3://"):
        return place.rstrip("/") + "/"
    return None if "://" in place else place


def _cores_per_worker(workers: int) -> int:
    """A batch job may score in as many processes as its worker's share of the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _redact(url: str) -> str:
    """Hide a password in a database URL before it is printed."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
