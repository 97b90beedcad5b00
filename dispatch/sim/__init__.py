"""The dispatch simulator: days replayed in virtual time through the real engine.

Pure modules (no Django, like `dispatch.engine`): `model` (what a scenario is), `scenarios`
(generated days), `policies`, `run` (the event loop), `metrics`, `report`. Django side:
`history` (a scenario from the database), `services`/`selectors` (runs requested in the web UI).
"""
