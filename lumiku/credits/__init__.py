"""Credits: the ledger (`ledger.py`), its audit (`reconcile.py`), admin grants (`grants.py`)
and what the routes call with `deps` (`service.py`). SPEC §5."""
