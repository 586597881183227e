"""The issuance transparency log: RFC 9162 Merkle trees, C2SP signed notes and checkpoints."""
