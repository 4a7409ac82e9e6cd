//! The `onStatus` codes the nodes send, written once. Players and encoders match on these
//! strings (ffmpeg prints them, OBS decides whether to retry by them), so an edge and an
//! origin refusing the same thing must say it with the same code.

/// A publish refused for its stream name or application.
pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
/// A publish refused for its token, or ended because another connection took it over.
pub const PUBLISH_REJECTED: &str = "NetStream.Publish.Rejected";
/// A play refused or ended by the node.
pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
/// A play of a stream that is not live.
pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
/// The publisher of the stream being played went away.
pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
/// The stream being played stopped.
pub const PLAY_STOP: &str = "NetStream.Play.Stop";
/// Enhanced RTMP v2: the server asks the client to reconnect (it is going away).
pub const CONNECT_RECONNECT_REQUEST: &str = "NetConnection.Connect.ReconnectRequest";
