"""The REST API edge (`/api/v1/…`, JSON, OpenAPI 3.1): translates HTTP to the service layer's
use cases and their errors to RFC 9457 problem details. Loaded like the other edges (entry point
`switchboard.edges: api`); see docs/api/README.md."""
