"""Local launcher: starts and stops Redis, vLLM and the other processes of the stack on this machine."""
