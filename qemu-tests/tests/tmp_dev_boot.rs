// TEMPORARY (removed after a manual check): boots out/dev's image without building.
use hull_qemu_tests::{guest, Boot};
#[test]
fn tmp_dev_boot() {
    let report = hull::build::read_report(std::path::Path::new("/work/main/out/dev")).unwrap();
    let r = Boot::new("tmp_dev_boot", &report.image, hull::manifest::Arch::X86_64)
        .unwrap()
        .check_script(guest::BOOT_CHECK)
        .expect_boots(2)
        .run();
    match r {
        Ok(o) => {
            eprintln!("{}", o.summary());
            eprintln!("report commit {}", report.commit);
            eprintln!("warnings {:?}", o.warnings);
        }
        Err(e) => eprintln!("ERR: {e:#}"),
    }
}
