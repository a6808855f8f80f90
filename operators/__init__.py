"""Pure logic of the hub, one package per capability; no I/O and no engine imports."""
