"""The one exception family the CLI shows as a single line (config, store, Kafka, input)."""


class HubError(Exception):
    """A problem the operator can fix; its message is one complete line."""
