"""Server-rendered web UI. Views read through ``changes.selectors`` and write only through
``changes.services``; domain errors become messages or form errors, never a 500."""
