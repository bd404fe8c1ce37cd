//! In-process scenarios of the pass against the fakes of `testing`.
