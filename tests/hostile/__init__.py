"""The hostile-input harness: every command of the CLI against inputs no well-behaved producer writes."""
