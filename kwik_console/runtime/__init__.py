"""Starting the console: the frontend build and server launch, the pinned Reflex / granian patches, wiring."""
