"""The peer suite: stable-baselines3's and sb3-contrib's own tests run on the project's buffers."""
