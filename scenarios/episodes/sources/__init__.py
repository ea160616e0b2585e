"""Episode sources, one small adapter module each: ``record_to_case(record, index) -> ClinicalCase`` and a
``SOURCE`` declaration (``base.py``) that ``scenarios/episodes/load.py`` finds by itself. ``from_mcqa.py`` makes a case
of any multiple-choice item; ``facts.py`` sorts free-text findings."""
