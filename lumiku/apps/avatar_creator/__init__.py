"""Avatar Creator (`avatar-creator`, SPEC §8.1): avatars from a prompt, a preset or an
upload, kept in projects."""
