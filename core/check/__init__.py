"""What is this file or folder? Model Check: detection, headers, file sources, the report and its wording, the registry."""
