"""What the gateway (`server/`) and the worker (`adapter/`) share: the contract between the two processes.

Redis keys and their semantics (`keys`), the wire models (`wire`), the stream record schemas with their
writers and readers (`records`), the vLLM client and chat bodies (`engine`, `chat`), the adapter registry
and routing, with the load -> check -> move half of a promotion and reload-and-retry (`registry`,
`routing`), answer extraction and the one correctness rule (`answers`), image formats (`images`), TTRV
rows (`rows`) and log set-up (`logs`).

Layers: `core` imports no other project package, and neither FastAPI nor torch; `server` and `adapter`
import `core` and never each other (tests/unit/test_layers.py checks it).
"""
