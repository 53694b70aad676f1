package dev.vfiovm.node;

/** Why the agent stops with phase Failed: error (errno name or short code) and a message saying what to change. */
final class AgentFailure extends RuntimeException {
  private final String error;

  AgentFailure(String error, String message) {
    super(message);
    this.error = error;
  }

  String error() {
    return error;
  }
}
