"""Several llama.cpp engines of one model on one machine (``medcouncil serve --replicas N``).

llama-cpp-python's server answers one request at a time. On a CPU host, N engines sharing out the cores answer N
requests at once: on 2 cores, two 1-thread engines give 1.5x the council items per second of one (README, replica
benchmark). They are started side by side (on consecutive ports from ``--port``, else on free ports), recorded as
one server (the first engine's record lists the others), and every command that finds the record uses them as a
pool (``serving/pool.py``): least-busy routing, a dead replica taken out, its request answered by another. A
replica that dies is dropped from the record (``read_state``) while the others serve.
"""

from __future__ import annotations

from medcouncil.serving.common.errors import MedcouncilError, PortInUseError
from medcouncil.serving.config import HOST, EngineConfig
from medcouncil.serving.server import EngineServer
from medcouncil.serving.state import ServerState, port_in_use


class ReplicaSet:
    """The engines of ``config.replicas`` replicas, started and stopped together; the interface of one
    :class:`EngineServer` (``start``, ``running``, ``failure``, ``stop``)."""

    def __init__(self, config: EngineConfig, detached: bool = False) -> None:
        self.config = config
        threads = config.resolved_threads()
        self.servers = [
            EngineServer(
                config.model_copy(
                    update={
                        "replicas": 1,
                        "threads": threads,
                        "port": config.port + index if config.port is not None else None,
                    }
                ),
                detached=detached,
            )
            for index in range(config.replicas)
        ]

    def start(self) -> ServerState:
        """Start every replica, one after the other (each waits until it answers); the first one's record, listing
        the others in ``replicas``. A replica that fails to start stops those already started.

        Raises:
            PortInUseError, ServerStartError, ...: as :meth:`EngineServer.start`, for the replica that failed.
        """
        count = len(self.servers)
        if self.config.port is not None:  # every port checked before the first engine loads
            for index, server in enumerate(self.servers):
                port = server.config.port
                if port is not None and port_in_use(port):
                    raise PortInUseError(
                        f"port {port} on {HOST} (replica {index + 1} of {count}) is already in use; the replicas "
                        f"take ports {self.config.port}-{self.config.port + count - 1}: choose another --port"
                    )
        states: list[ServerState] = []
        try:
            for index, server in enumerate(self.servers):
                try:
                    states.append(server.start())
                except MedcouncilError as error:
                    raise type(error)(f"replica {index + 1} of {count}: {error}") from error
        except BaseException:
            self.stop()
            raise
        first, *others = states
        first.replicas = others
        first.layout = self.config.layout()  # the set's own: its replica count and each replica's threads
        return first

    def running(self) -> bool:
        """Some replica's engine still runs."""
        return any(server.running() for server in self.servers)

    def lost(self) -> int:
        """How many replicas' engines are gone."""
        return sum(not server.running() for server in self.servers)

    def failure(self, wait: float = 0.0) -> str | None:
        """Why the first replica that is gone ended (see :meth:`EngineServer.failure`), or None while all run."""
        for server in self.servers:
            if (reason := server.failure(wait)) is not None:
                return reason
        return None

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
