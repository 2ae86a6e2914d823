//! The `wacrm` binary: the library's commands with the adapter kinds wacrm ships.

fn main() -> anyhow::Result<()> {
    wacrm::main_with(wacrm::adapters())
}
