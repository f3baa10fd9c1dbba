"""Buying credits through Duitku (SPEC §11).

```
packages.py   the packages on sale (configuration only)
duitku.py     the Duitku API: signatures, the inquiry call behind a breaker, callback fields
service.py    create → pending; callback → success (+ purchase entry) | failed; status
expiry.py     pending payments past payments.expiry_s → expired (a periodic task)
checks.py     the payment checks of `lumiku reconcile`
routes.py     /api/payment/*
```
"""
