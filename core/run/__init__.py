"""Running a model: hardware, the memory plan, loading, generation settings, video."""
