"""Document email: requests, wording per document type, uploads and sending."""
