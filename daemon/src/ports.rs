//! Port assignment: explicit ports, lowest-free allocation in the range, persistence in `state_dir`.
