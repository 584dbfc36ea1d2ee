"""Challenge-format data: schema, validated loader and synthetic generator."""
