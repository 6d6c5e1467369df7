"""A throw-away PostgreSQL cluster for the tests and benches: Debian's ``postgresql`` package,
``initdb`` + ``pg_ctl`` in a temporary directory, reached on a unix socket only (no TCP port
to collide with another worker or a real server), removed at the end.

As root (CI), ``initdb`` refuses to run: the server binaries run as the ``postgres`` user
(created by the Debian package) through ``runuser``, in a directory that user owns. The
superuser of the cluster is named ``postgres`` either way; the socket trusts local clients.

``initdb`` (~1.3 s of CPU) runs once per test run, whatever the number of xdist workers, into
a template (:func:`template_data`, made under a file lock by the first worker to need it);
each worker's cluster is a copy of it (``cp -a``: ~0.07 s). Each worker keeps a cluster of its
own rather than one shared by all: tests stop and restart the server (the database going away),
which would fail the other workers' tests at the same moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PORT = 5432     # only names the socket file (.s.PGSQL.5432) in the private socket directory

# Where the test clusters live: in memory (/dev/shm, a tmpfs) where there is room, else the
# temporary directory. Each test schema creates and drops ~100 relation files, each cluster is
# a copy of ~1,000 files: on this machine's ext4 the inode allocations alone (the bitmap scans
# of find_inode_bit / recently_deleted) were ~4 % of a full run's CPU, `perf record -a` showed,
# in the servers and `cp`. The servers are the same either way (fsync is off for tests anyway);
# the benches' durable clusters stay on disk, where fsync means something.
# MODEM_DIALER_TEST_PG_DIR=DIR puts them elsewhere.
SHM = Path("/dev/shm")
SHM_MIN_FREE = 2 << 30      # 8 workers' clusters take ~0.4 GB: leave a small /dev/shm (a container's 64 MB) alone


def clusters_dir(*, durable: bool = False) -> Path:
    """The directory the clusters (and the run's template) are made in."""
    chosen = os.environ.get("MODEM_DIALER_TEST_PG_DIR")
    if chosen:
        return Path(chosen)
    if not durable:
        try:
            st = os.statvfs(SHM)
            if st.f_bavail * st.f_frsize >= SHM_MIN_FREE and os.access(SHM, os.W_OK):
                return SHM
        except OSError:
            pass
    return Path(tempfile.gettempdir())


def bin_dir() -> Path | None:
    """The newest installed server version's bin directory (/usr/lib/postgresql/<v>/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(newest).parent


@dataclass
class PgCluster:
    dir: Path
    bin: Path
    as_user: list[str]          # ["runuser", "-u", "postgres", "--"] as root, [] otherwise
    _n: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "run"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={PORT}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / args[0]), *args[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        # -w: return once the server accepts connections; the log stays in the directory
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", f"-k {self.socket_dir} -p {PORT}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))

    def running(self) -> bool:
        r = subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "status", "-D", str(self.data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def create_db(self, prefix: str = "t") -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        name = f"{prefix}{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')  # a name we made, not input
        return self.dsn(name)

    def new_schema(self) -> str:
        """A fresh empty schema in the worker's database; returns a DSN whose search_path is it
        (a new schema costs milliseconds where a new database costs most of a second)."""
        import psycopg

        if not hasattr(self, "_work"):
            self._work = self.create_db("w")
        name = f"s{next(self._n)}"
        with psycopg.connect(self._work, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {name}")  # a name we made, not input
        return f"{self._work}&options=-csearch_path%3D{name}"

    def drop_schema(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("%3D", 1)[1]
        with psycopg.connect(self._work, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def drop_db(self, dsn: str) -> None:
        import psycopg

        name = dsn.split("/")[-1].split("?")[0]
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _owner_prefix() -> list[str]:
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no 'postgres' user (install Debian's postgresql)") from None
    return ["runuser", "-u", "postgres", "--"]


def _reap_orphans(b: Path, prefix: list[str]) -> None:
    """Stop and remove the clusters of test processes that died without their teardown (an
    xdist worker killed by the controller): their servers would run on forever."""
    for owner in [p for d in {clusters_dir(), clusters_dir(durable=True)} for p in d.glob("md-pg-*/owner")]:
        try:
            os.kill(int(owner.read_text()), 0)
            continue                        # its process is alive: not ours to touch
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        data = owner.parent / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(b / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(owner.parent, ignore_errors=True)


def _new_data_dir(cluster: PgCluster, *, durable: bool, template: Path | None) -> None:
    """``initdb`` (or a copy of a template made by it) into ``cluster.data``, then the test settings."""
    if template is not None:
        # as the owner of the files, so that modes and ownership are the template's (0700, postgres)
        subprocess.run([*cluster.as_user, "cp", "-a", str(template), str(cluster.data)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    else:
        # fsync off: a test cluster need not survive a power cut, and it is much faster
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "--no-sync",
                     "--locale=C.UTF-8", "-E", "UTF8")
    conf = cluster.data / "postgresql.conf"
    with open(conf, "a") as f:
        if not durable:
            f.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        f.write("\nlisten_addresses = ''\nmax_connections = 300\nshared_buffers = 64MB\n")
    if cluster.as_user:
        shutil.chown(conf, "postgres", "postgres")


def _cluster_dir(d: Path, b: Path, prefix: list[str], owner: int) -> PgCluster:
    cluster = PgCluster(d, b, prefix)
    (d / "owner").write_text(str(owner))
    cluster.socket_dir.mkdir()
    if prefix:
        d.chmod(0o755)
        for p in (d, cluster.socket_dir):
            shutil.chown(p, "postgres", "postgres")
    return cluster


def _binaries() -> tuple[Path, list[str]]:
    b = bin_dir()
    if b is None:
        raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                           "(scripts/setup.sh installs Debian's postgresql)")
    return b, _owner_prefix()


@contextlib.contextmanager
def pg_cluster(*, durable: bool = False, template: Path | None = None) -> Iterator[PgCluster]:
    """Start a private cluster; stop it and remove its files on exit, whatever happened.
    ``durable``: fsync and synchronous commits on, as a production server (benches).
    ``template``: copy this data directory (:func:`template_data`) instead of running initdb."""
    b, prefix = _binaries()
    _reap_orphans(b, prefix)
    # not under pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter
    d = Path(tempfile.mkdtemp(prefix="md-pg-", dir=clusters_dir(durable=durable)))
    cluster = PgCluster(d, b, prefix)
    try:
        cluster = _cluster_dir(d, b, prefix, os.getpid())
        _new_data_dir(cluster, durable=durable, template=template)
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(d, ignore_errors=True)


# ---- one initdb for the whole test run --------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (flock: released if the holder dies)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _template_dir(run: int) -> Path:
    """Where the template of the test run led by process ``run`` lives (the xdist controller,
    or the only pytest process); reaped as an orphan (its ``owner`` file) once ``run`` is gone."""
    return clusters_dir() / f"md-pg-template-{run}"


def template_data(run: int) -> Path:
    """The run's initdb output, made once by whichever worker asks first (the others wait on
    the run's lock, then copy it)."""
    b, prefix = _binaries()
    d = _template_dir(run)
    with _locked(d.with_suffix(".lock")):
        t = d / "data"
        if (t / "PG_VERSION").exists():
            return t
        _reap_orphans(b, prefix)
        shutil.rmtree(d, ignore_errors=True)        # a half-made one (its maker was killed)
        d.mkdir()
        (d / "owner").write_text(str(run))
        if prefix:
            d.chmod(0o755)
            shutil.chown(d, "postgres", "postgres")
        tmp = d / "tmp"
        subprocess.run([*prefix, str(b / "initdb"), "-D", str(tmp), "-U", "postgres", "--auth=trust", "--no-sync",
                        "--locale=C.UTF-8", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
        tmp.rename(t)
        return t


def remove_template(run: int) -> None:
    """Remove the template of test run ``run`` (at the end of the run)."""
    d = _template_dir(run)
    shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        d.with_suffix(".lock").unlink()
