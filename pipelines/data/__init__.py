"""The data a run trains on: the embedded set (generated locally on first use), synthetic
images, and opening the embedded set or a user's path with its storage latency."""
