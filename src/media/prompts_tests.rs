use super::*;

#[test]
fn builtin_prompts_load_and_have_audio() {
    let c = Catalog::load(None).unwrap();
    for id in PromptId::ALL {
        let p = c.get(id);
        assert!(p.pcmu.len() > 10, "{id} is too short");
        assert_eq!(p.pcmu.len(), p.pcma.len());
    }
}

#[test]
fn override_dir_replaces_by_name_and_refuses_wrong_format() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.path().join("goodbye.wav"), spec).unwrap();
    for i in 0..1600 {
        w.write_sample(((i % 40) * 500) as i16).unwrap();
    }
    w.finalize().unwrap();
    let c = Catalog::load(Some(dir.path())).unwrap();
    assert_eq!(c.get(PromptId::Goodbye).pcmu.len(), 10);

    let spec = hound::WavSpec {
        sample_rate: 16000,
        ..spec
    };
    let path = dir.path().join("agent-user.wav");
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    w.write_sample(0i16).unwrap();
    w.finalize().unwrap();
    let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("agent-user.wav"), "{e}");
    assert!(e.contains("16000 Hz"), "{e}");
}

#[test]
fn another_language_needs_its_directory_and_falls_back_per_prompt() {
    let e = Catalog::load_language(None, "es").unwrap_err().to_string();
    assert!(e.contains("\"es\"") && e.contains("[prompts] dir"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("es")).unwrap();
    let es = Catalog::load_language(Some(dir.path()), "es").unwrap();
    let en = Catalog::load(None).unwrap();
    assert_eq!(
        es.get(PromptId::Goodbye).pcmu,
        en.get(PromptId::Goodbye).pcmu
    );
}
