"""Episode sources: each a small ``record_to_case`` adapter into :class:`medcouncil.agents.cases.ClinicalCase`."""
