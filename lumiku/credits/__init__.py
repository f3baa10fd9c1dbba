"""Credits: the ledger (`ledger.py`) and its audit (`reconcile.py`). SPEC §5."""
