//! The prompt catalog: 8 kHz mono 16-bit WAVs (compiled-in defaults, overridable by name from a
//! directory), cut into 20 ms frames and encoded once per codec at load. Playing a prompt is then
//! copying 160-byte frames into RTP packets; the frames are shared by every call through `Arc`.

use super::g711;
use std::collections::HashMap;
use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// Samples (and bytes, for G.711) in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// One encoded 20 ms G.711 frame.
pub type Frame = [u8; FRAME_SAMPLES];

/// The audio codecs agentgw speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
    pub fn silence(self) -> &'static Frame {
        static ULAW: Frame = [g711::ULAW_SILENCE; FRAME_SAMPLES];
        static ALAW: Frame = [g711::ALAW_SILENCE; FRAME_SAMPLES];
        match self {
            Codec::Pcmu => &ULAW,
            Codec::Pcma => &ALAW,
        }
    }
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => g711::linear_to_ulaw(sample),
            Codec::Pcma => g711::linear_to_alaw(sample),
        }
    }
}

/// Every prompt the gateway can play; the id is also the WAV file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PromptId {
    AgentUser,
    AgentPass,
    AgentIncorrect,
    LoginIncorrect,
    AgentAlreadyOn,
    AgentLoginOk,
    Goodbye,
    ServiceUnavailable,
    AgentAlreadyOnRetry,
    AgentConfirm,
    AgentLocked,
    StationInUse,
    StationNotAllowed,
    AgentLoggedOff,
    AgentNotLoggedOn,
    SessionDropped,
    StatusAvailable,
    StatusOnBreak,
    StatusWorkOffline,
    PasscodeExpired,
    PasscodeAgain,
    PasscodeInvalid,
    PasscodeMismatch,
    AgentExtension,
    AdminLogout,
}

impl PromptId {
    pub const ALL: [PromptId; 25] = [
        PromptId::AgentUser,
        PromptId::AgentPass,
        PromptId::AgentIncorrect,
        PromptId::LoginIncorrect,
        PromptId::AgentAlreadyOn,
        PromptId::AgentLoginOk,
        PromptId::Goodbye,
        PromptId::ServiceUnavailable,
        PromptId::AgentAlreadyOnRetry,
        PromptId::AgentConfirm,
        PromptId::AgentLocked,
        PromptId::StationInUse,
        PromptId::StationNotAllowed,
        PromptId::AgentLoggedOff,
        PromptId::AgentNotLoggedOn,
        PromptId::SessionDropped,
        PromptId::StatusAvailable,
        PromptId::StatusOnBreak,
        PromptId::StatusWorkOffline,
        PromptId::PasscodeExpired,
        PromptId::PasscodeAgain,
        PromptId::PasscodeInvalid,
        PromptId::PasscodeMismatch,
        PromptId::AgentExtension,
        PromptId::AdminLogout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PromptId::AgentUser => "agent-user",
            PromptId::AgentPass => "agent-pass",
            PromptId::AgentIncorrect => "agent-incorrect",
            PromptId::LoginIncorrect => "login-incorrect",
            PromptId::AgentAlreadyOn => "agent-alreadyon",
            PromptId::AgentLoginOk => "agent-loginok",
            PromptId::Goodbye => "goodbye",
            PromptId::ServiceUnavailable => "service-unavailable",
            PromptId::AgentAlreadyOnRetry => "agent-alreadyon-retry",
            PromptId::AgentConfirm => "agent-confirm",
            PromptId::AgentLocked => "agent-locked",
            PromptId::StationInUse => "station-in-use",
            PromptId::StationNotAllowed => "station-not-allowed",
            PromptId::AgentLoggedOff => "agent-loggedoff",
            PromptId::AgentNotLoggedOn => "agent-not-logged-on",
            PromptId::SessionDropped => "session-dropped",
            PromptId::StatusAvailable => "status-available",
            PromptId::StatusOnBreak => "status-on-break",
            PromptId::StatusWorkOffline => "status-work-offline",
            PromptId::PasscodeExpired => "passcode-expired",
            PromptId::PasscodeAgain => "passcode-again",
            PromptId::PasscodeInvalid => "passcode-invalid",
            PromptId::PasscodeMismatch => "passcode-mismatch",
            PromptId::AgentExtension => "agent-extension",
            PromptId::AdminLogout => "admin-logout",
        }
    }

    fn builtin_wav(self) -> &'static [u8] {
        match self {
            PromptId::AgentUser => include_bytes!("../../prompts/en/agent-user.wav"),
            PromptId::AgentPass => include_bytes!("../../prompts/en/agent-pass.wav"),
            PromptId::AgentIncorrect => include_bytes!("../../prompts/en/agent-incorrect.wav"),
            PromptId::LoginIncorrect => include_bytes!("../../prompts/en/login-incorrect.wav"),
            PromptId::AgentAlreadyOn => include_bytes!("../../prompts/en/agent-alreadyon.wav"),
            PromptId::AgentLoginOk => include_bytes!("../../prompts/en/agent-loginok.wav"),
            PromptId::Goodbye => include_bytes!("../../prompts/en/goodbye.wav"),
            PromptId::ServiceUnavailable => {
                include_bytes!("../../prompts/en/service-unavailable.wav")
            }
            PromptId::AgentAlreadyOnRetry => {
                include_bytes!("../../prompts/en/agent-alreadyon-retry.wav")
            }
            PromptId::AgentConfirm => include_bytes!("../../prompts/en/agent-confirm.wav"),
            PromptId::AgentLocked => include_bytes!("../../prompts/en/agent-locked.wav"),
            PromptId::StationInUse => include_bytes!("../../prompts/en/station-in-use.wav"),
            PromptId::StationNotAllowed => {
                include_bytes!("../../prompts/en/station-not-allowed.wav")
            }
            PromptId::AgentLoggedOff => include_bytes!("../../prompts/en/agent-loggedoff.wav"),
            PromptId::AgentNotLoggedOn => {
                include_bytes!("../../prompts/en/agent-not-logged-on.wav")
            }
            PromptId::SessionDropped => include_bytes!("../../prompts/en/session-dropped.wav"),
            PromptId::StatusAvailable => include_bytes!("../../prompts/en/status-available.wav"),
            PromptId::StatusOnBreak => include_bytes!("../../prompts/en/status-on-break.wav"),
            PromptId::StatusWorkOffline => {
                include_bytes!("../../prompts/en/status-work-offline.wav")
            }
            PromptId::PasscodeExpired => include_bytes!("../../prompts/en/passcode-expired.wav"),
            PromptId::PasscodeAgain => include_bytes!("../../prompts/en/passcode-again.wav"),
            PromptId::PasscodeInvalid => include_bytes!("../../prompts/en/passcode-invalid.wav"),
            PromptId::PasscodeMismatch => include_bytes!("../../prompts/en/passcode-mismatch.wav"),
            PromptId::AgentExtension => include_bytes!("../../prompts/en/agent-extension.wav"),
            PromptId::AdminLogout => include_bytes!("../../prompts/en/admin-logout.wav"),
        }
    }
}

impl fmt::Display for PromptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PromptId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        PromptId::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}

/// Why a prompt could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt {file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("prompt {file}: found {found}; prompts must be 8000 Hz mono 16-bit PCM WAV (sox in.wav -r 8000 -c 1 -b 16 out.wav)")]
    WrongFormat { file: String, found: String },
    #[error("prompt language {language:?} has no directory {dir}: set [prompts] dir to a directory with a {language}/ sub-directory of WAVs")]
    MissingLanguage { language: String, dir: String },
}

/// One prompt encoded for each codec.
#[derive(Debug)]
pub struct EncodedPrompt {
    pub pcmu: Vec<Frame>,
    pub pcma: Vec<Frame>,
}

impl EncodedPrompt {
    pub fn frames(&self, codec: Codec) -> &[Frame] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }
}

/// Every prompt, encoded once; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    prompts: Arc<HashMap<PromptId, Arc<EncodedPrompt>>>,
}

impl Catalog {
    /// Loads the built-in prompts, then replaces any found as `ID.wav` in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, PromptError> {
        Catalog::load_language(dir, "en")
    }

    /// Loads the prompts of `language`: `dir/LANGUAGE/ID.wav`, falling back per prompt to
    /// `dir/ID.wav` and then to the built-in (English) prompt. A language other than "en" needs
    /// its directory.
    pub fn load_language(dir: Option<&Path>, language: &str) -> Result<Catalog, PromptError> {
        let lang_dir = dir.map(|d| d.join(language)).filter(|d| d.is_dir());
        if language != "en" && lang_dir.is_none() {
            return Err(PromptError::MissingLanguage {
                language: language.to_string(),
                dir: dir.map_or_else(
                    || "(no [prompts] dir)".into(),
                    |d| d.join(language).display().to_string(),
                ),
            });
        }
        let mut prompts = HashMap::new();
        for id in PromptId::ALL {
            let file_name = format!("{id}.wav");
            let found = [lang_dir.as_deref(), dir]
                .into_iter()
                .flatten()
                .map(|d| d.join(&file_name))
                .find(|p| p.exists());
            let (bytes, file) = match found {
                Some(path) => {
                    let bytes = std::fs::read(&path).map_err(|e| PromptError::Unreadable {
                        file: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    (bytes, path.display().to_string())
                }
                None => (id.builtin_wav().to_vec(), format!("built-in {file_name}")),
            };
            let samples = decode_wav(&bytes, &file)?;
            prompts.insert(id, Arc::new(encode(&samples)));
        }
        Ok(Catalog {
            prompts: Arc::new(prompts),
        })
    }

    pub fn get(&self, id: PromptId) -> Arc<EncodedPrompt> {
        // Every id is inserted by `load`, so the lookup cannot miss.
        self.prompts
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Arc::new(encode(&[])))
    }
}

fn decode_wav(bytes: &[u8], file: &str) -> Result<Vec<i16>, PromptError> {
    let reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| PromptError::Unreadable {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(PromptError::WrongFormat {
            file: file.to_string(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {:?}",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        });
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PromptError::Unreadable {
            file: file.to_string(),
            reason: e.to_string(),
        })
}

fn encode(samples: &[i16]) -> EncodedPrompt {
    let frames = |codec: Codec| {
        samples
            .chunks(FRAME_SAMPLES)
            .map(|chunk| {
                let mut frame = *codec.silence();
                for (out, &s) in frame.iter_mut().zip(chunk) {
                    *out = codec.encode(s);
                }
                frame
            })
            .collect()
    };
    EncodedPrompt {
        pcmu: frames(Codec::Pcmu),
        pcma: frames(Codec::Pcma),
    }
}

#[cfg(test)]
#[path = "prompts_tests.rs"]
mod tests;
