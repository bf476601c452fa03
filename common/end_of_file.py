"""The end-of-file marker that closes each file's rows on their way through the index job.

A read task emits one marker row after a file's last record (`_read_error = END_OF_FILE`, `_line` =
records read); the prep stage turns it into a row with `reject_stage = EOF_STAGE`, and the driver
checkpoints the file when it arrives. Defined here once because the reader (connectors/), the prep
stage (pipeline/) and the sink (jobs/) all recognise it."""

END_OF_FILE = "__end_of_file__"  # `_read_error` of the reader's marker row; not an error
EOF_STAGE = "eof"  # `reject_stage` of the marker row after prep
