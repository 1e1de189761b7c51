"""netflix-elt: Snowflake-native ELT for MovieLens-format movie data."""

__version__ = "0.1.0"
