"""Visual quality control (in progress, issue 3): not registered with the core yet."""
