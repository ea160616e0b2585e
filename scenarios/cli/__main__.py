"""``python -m medcouncil.scenarios.cli``: the ``medcouncil`` command (as under ``accelerate launch -m``)."""

from medcouncil.scenarios.cli.app import app

app(prog_name="medcouncil")
