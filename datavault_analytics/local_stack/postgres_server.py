"""A real PostgreSQL cluster on 127.0.0.1, for the local stack and the tests.

Debian's PostgreSQL 15 binaries where present, else the `pgserver` wheel's; as root, through `runuser`.
docs/local-stack.md has the details.
"""

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.processes import (
    LOCALHOST,
    log_tail,
    pid_is_alive,
    port_answers,
    terminate_pid,
    wait_until,
)

DEBIAN_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def find_postgres_bin_dir() -> Path:
    """Debian's PostgreSQL 15 binaries if installed, else the ones bundled in the pgserver wheel."""
    if (DEBIAN_BIN_DIR / "pg_ctl").exists():
        return DEBIAN_BIN_DIR
    # find_spec rather than import: importing pgserver takes a lock file in a shared runtime folder.
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "pginstall" / "bin"
        if (bundled / "pg_ctl").exists():
            return bundled
    raise LocalStackError(
        f"no PostgreSQL server binaries: neither {DEBIAN_BIN_DIR} (apt-get install postgresql-15) nor the "
        "pgserver wheel (pip install pgserver) is installed"
    )


class PostgresServer:
    """One PostgreSQL cluster: data_dir holds it, it listens on 127.0.0.1:port with trust auth.

    durable=False turns fsync off, for tests only: the stack's data must survive stop and start.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        log_path: Path | None = None,
        durable: bool = True,
        bin_dir: Path | None = None,
        listen_addresses: tuple[str, ...] = (LOCALHOST,),
        trusted_networks: tuple[str, ...] = (),
    ):
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.log_path = (
            Path(log_path).absolute() if log_path else self.data_dir.with_name(f"{self.data_dir.name}.log")
        )
        self.durable = durable
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin_dir()
        # Tests only: more addresses to listen on, and networks (CIDR) whose clients are trusted like localhost.
        self.listen_addresses = listen_addresses
        self.trusted_networks = trusted_networks
        self.os_user = _server_os_user(self.bin_dir) if os.geteuid() == 0 else None

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/{dbname}"

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process is alive."""
        try:
            pid = int(self._postmaster_pid_lines()[0])
        except (ValueError, IndexError):
            return None
        return pid if pid_is_alive(pid) else None

    def running_port(self) -> int | None:
        """The port the running postmaster listens on (it may differ from self.port), if it runs."""
        if self.pid() is None:
            return None
        try:
            return int(self._postmaster_pid_lines()[3])
        except (ValueError, IndexError):
            return None

    def _postmaster_pid_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def is_running(self) -> bool:
        return self.pid() is not None and port_answers(self.port)

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if data_dir is empty, start it, and wait until it accepts connections."""
        if self.pid() is not None:
            if port_answers(self.port):
                return
            raise LocalStackError(
                f"PostgreSQL in {self.data_dir} is already running, but not on port {self.port}; stop it "
                f"first (log {self.log_path})"
            )
        if port_answers(self.port):
            raise PortInUseError("PostgreSQL", self.port)
        self._prepare_directories()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb_args = ["-D", str(self.data_dir), "--auth=trust", "-U", SUPERUSER, "--encoding=UTF8"]
            initdb_args += ["--locale=C", "--no-instructions"]
            if not self.durable:
                initdb_args.append("--no-sync")
            self._run("initdb", initdb_args, timeout=timeout)
        self._trust_networks()
        options = f"-c listen_addresses={','.join(self.listen_addresses)} -p {self.port} -c unix_socket_directories=''"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl_args = [
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(timeout)),
        ]
        self._run("pg_ctl", [*pg_ctl_args, "-o", options], timeout=timeout + 10)
        wait_until(
            self._accepts_connections,
            part="PostgreSQL",
            address=self.address,
            log_path=self.log_path,
            timeout=timeout,
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop with `pg_ctl stop -m fast`: open sessions are ended, committed data is kept."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self._run(
                "pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout))]
            )
        except LocalStackError:
            # SIGINT is PostgreSQL's own "fast shutdown" signal, used when pg_ctl cannot do it.
            terminate_pid(pid, timeout=timeout, first_signal=signal.SIGINT)

    def crash(self, timeout: float = 60.0) -> None:
        """Stop as a crash does (`pg_ctl stop -m immediate`): sessions cut, recovery at the next start."""
        if self.pid() is not None:
            self._run(
                "pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", str(int(timeout))]
            )

    def create_database(self, name: str) -> None:
        """Create database name unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                return
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass

    def execute_sql_file(self, dbname: str, sql_path: Path) -> None:
        """Run every statement of sql_path in dbname, in one transaction."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), connect_timeout=10) as conn:
            conn.execute(Path(sql_path).read_text())

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _trust_networks(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        lines = [f"host all all {network} trust" for network in self.trusted_networks]
        missing = [line for line in lines if line not in hba.read_text().splitlines()]
        if missing:
            with hba.open("a") as out:
                out.write("".join(f"{line}\n" for line in missing))

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self.os_user is None:
            self.data_dir.chmod(0o700)
            return
        user = pwd.getpwnam(self.os_user)
        for path in (self.data_dir, self.log_path):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.data_dir.chmod(0o700)
        _make_ancestors_traversable(self.data_dir)
        _make_ancestors_traversable(self.log_path)

    def _run(self, program: str, args: list[str], timeout: float = 60.0) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.os_user is not None:
            command = ["runuser", "-u", self.os_user, "--", *command]
        # Output to a file, not a pipe: the server that pg_ctl starts must not hold our pipe open.
        with tempfile.TemporaryFile("w+") as output:
            try:
                result = subprocess.run(
                    command,
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as error:
                raise LocalStackError(
                    f"PostgreSQL: {program} took more than {timeout:.0f} s for {self.data_dir}; see its log "
                    f"{self.log_path}"
                ) from error
            if result.returncode != 0:
                output.seek(0)
                said = " ".join(output.read().split())[-400:]
                tail = log_tail(self.log_path)
                raise LocalStackError(
                    f"PostgreSQL: {program} failed (exit {result.returncode}) for {self.data_dir} on "
                    f"{self.address}: {said}" + (f"; log {self.log_path}: {tail}" if tail else "")
                )


def _server_os_user(bin_dir: Path) -> str:
    """The OS user that runs PostgreSQL when we are root: `postgres`, else a `pgserver` user we create."""
    for name in (SUPERUSER, "pgserver"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        break
    else:
        name = "pgserver"
        useradd = shutil.which("useradd")
        if useradd is None:
            raise LocalStackError(
                "PostgreSQL cannot run as root, and there is no `useradd` to create a user for it"
            )
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    if bin_dir != DEBIAN_BIN_DIR:
        # The wheel's binaries live under a venv that may sit in root's private folders.
        _make_ancestors_traversable(bin_dir / "pg_ctl")
    return name


def _make_ancestors_traversable(path: Path) -> None:
    """Add the x bit for others on every ancestor folder, so the server's OS user can reach path."""
    for folder in Path(path).absolute().parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
