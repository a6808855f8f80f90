"""Payload Structs, one module per source family; `schemas.events` gathers them into the tagged
union and the event-type registries, and re-exports every one."""
