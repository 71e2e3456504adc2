"""tito: the TinyTorch course tool for instructors and students (hand-written, not exported)."""
