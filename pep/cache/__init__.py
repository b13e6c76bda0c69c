"""Response caching that cannot leak across people (docs/caching.md).

The pipeline calls ``pep.cache.service.lookup`` once per admitted model call, after
obligations and before the provider; the returned ``Ticket`` wraps the provider's answer
(``watch``) and fills the cache once the answer went out whole (``fill``). Stores:
``pep.cache.stores``; the key: ``pep.cache.key``; replaying and assembling streams:
``pep.cache.replay``.
"""
