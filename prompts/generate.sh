#!/usr/bin/env bash
# Regenerates the default English prompt set (8 kHz, mono, 16-bit PCM WAV) with espeak-ng and
# sox. The WAVs are committed; run this only when a prompt's wording changes.
# Needs: apt-get install -y espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")/en"
command -v espeak-ng >/dev/null || { echo "espeak-ng is missing: apt-get install -y espeak-ng" >&2; exit 1; }
command -v sox >/dev/null || { echo "sox is missing: apt-get install -y sox" >&2; exit 1; }

say() {
  local id=$1 text=$2
  espeak-ng -v en-us -s 160 -w "/tmp/agentgw-$id.wav" "$text"
  # 8 kHz mono 16-bit; trim leading silence, keep a short tail so words are not clipped.
  sox "/tmp/agentgw-$id.wav" -r 8000 -c 1 -b 16 -e signed-integer "$id.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0 0.2
  rm -f "/tmp/agentgw-$id.wav"
}

say agent-user "Agent login. Please enter your agent number followed by the pound key."
say agent-pass "Please enter your passcode followed by the pound key."
say agent-incorrect "Login incorrect. Please enter your agent number followed by the pound key."
say login-incorrect "Login incorrect."
say agent-alreadyon "That agent is already logged on."
say agent-loginok "Agent logged in."
say goodbye "Goodbye."
say service-unavailable "The service is not available right now. Please try again later."
say agent-alreadyon-retry "That agent is already logged on. Please enter your agent number followed by the pound key."
say agent-confirm "That agent is already logged on. Press 1 to log the other session out and log on here, or 2 to cancel."
say agent-locked "This agent is locked. Please contact your administrator."
say station-in-use "That station is in use by another agent."
say station-not-allowed "You are not allowed to log on at this station."
say agent-loggedoff "Agent logged off."
say agent-not-logged-on "That agent is not logged on."
say session-dropped "Your connection has been dropped due to a subsequent log on to a different station."
say status-available "You are now available."
say status-on-break "You are now on break."
say status-work-offline "You are now working offline."
say passcode-expired "Your passcode has expired. Please enter a new passcode followed by the pound key."
say passcode-again "Please enter the new passcode again followed by the pound key."
say passcode-invalid "That passcode is not allowed. Use 4 to 12 digits, not all the same digit, not a sequence such as 1 2 3 4, and not your agent number. Please enter a new passcode followed by the pound key."
say passcode-mismatch "The passcodes do not match. Please enter a new passcode followed by the pound key."
say agent-extension "Please enter your extension followed by the pound key, or press pound to use your default extension."
say admin-logout "You have been logged out by an administrator."
