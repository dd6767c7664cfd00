//! Attaching tracing programs: BTF-typed tracepoints (`tp_btf`), classic tracepoints, and the
//! preference the tracing probes share (the BTF-typed program where the kernel loads it, else
//! the classic one: never both on one hook).

use aya::programs::{BtfTracePoint, ProgramError, TracePoint};
use aya::{Btf, Ebpf};

/// Loads `program` as a BTF-typed tracepoint on `tracepoint` and attaches it (the link lives as
/// long as `ebpf`).
pub(crate) fn attach_btf_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<(), ProgramError> {
    let prog: &mut BtfTracePoint = ebpf.program_mut(program).ok_or(ProgramError::UnexpectedProgramType)?.try_into()?;
    prog.load(tracepoint, btf)?;
    prog.attach()?;
    Ok(())
}

/// Loads `program` as the classic tracepoint `category:name` and attaches it.
fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<(), ProgramError> {
    let prog: &mut TracePoint = ebpf.program_mut(program).ok_or(ProgramError::UnexpectedProgramType)?.try_into()?;
    prog.load()?;
    prog.attach(category, name)?;
    Ok(())
}

/// The kernel's BTF for [`attach_preferring_btf`], or why the BTF-typed programs are not tried.
pub(crate) fn kernel_btf(force_tracepoint: bool) -> Result<Btf, String> {
    if force_tracepoint {
        return Err("not tried (force_tracepoint)".to_owned());
    }
    Btf::from_sys_fs().map_err(|e| e.to_string())
}

/// Which program a hook got.
pub(crate) enum Attached {
    /// The BTF-typed one.
    TpBtf,
    /// The classic one, because the BTF-typed one did not attach (why).
    Tracepoint(String),
}

/// Attaches `btf_program` to tracepoint `category:name` as a BTF-typed tracepoint, else
/// `classic` as the classic tracepoint. `Err((why tp_btf did not attach, why the classic did
/// not))` when neither did.
pub(crate) fn attach_preferring_btf(
    ebpf: &mut Ebpf,
    btf: &Result<Btf, String>,
    (btf_program, classic): (&str, &str),
    (category, name): (&str, &str),
) -> Result<Attached, (String, ProgramError)> {
    let tried = match btf {
        Ok(btf) => attach_btf_tracepoint(ebpf, btf_program, name, btf).map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    match tried {
        Ok(()) => Ok(Attached::TpBtf),
        Err(why) => match attach_tracepoint(ebpf, classic, category, name) {
            Ok(()) => Ok(Attached::Tracepoint(why)),
            Err(e) => Err((why, e)),
        },
    }
}
