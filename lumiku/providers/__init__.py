"""Image providers (SPEC §9): who renders avatars, posed figures and backgrounds.

```
base.py         the requests, results and the Provider protocol every provider implements
breaker.py      the circuit breaker in front of every HTTP provider
compose.py      subject over background compositing (shared by every provider)
exports.py      the export formats of the pose generator (instagram_story, print_a4, …)
local/          the embedded, deterministic Pillow renderers (the default)
huggingface.py  the Inference-API compatible HTTP provider
registry.py     Providers: which provider serves which operation, health, availability
```

Apps call `deps.providers.avatar(...)`, `.pose(...)`, `.background(...)`; job workers ask
`deps.providers.available(operation)` before claiming a job that needs a provider.
"""
