"""Webhook intake: verify a delivery, record it once by its ``webhook-id``, hand it to the engine
(``runs.engine.events``), answer fast."""
