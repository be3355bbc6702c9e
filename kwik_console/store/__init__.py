"""Storage: the SQLModel tables, the engine and sessions, the schema and its migrations, the secret box."""
