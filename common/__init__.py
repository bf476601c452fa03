"""Small types shared by jobs/, pipeline/ and connectors/ (errors, ids). Imports nothing heavy."""
