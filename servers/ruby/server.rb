# frozen_string_literal: true
#
# evaler Ruby session server (standard library only, single file).
#
# Runs notebook-style cells in TOPLEVEL_BINDING (locals, methods and
# constants persist across cells) and speaks evaler's newline-delimited JSON
# session protocol over an already-connected stream socket.  See README.md
# beside this file for the protocol, the command lines and the design notes.
#
# Transport (exactly one):
#   default / production: the socket on the fd named by $EVALER_FD (default 3);
#   --connect HOST:PORT:  connect out to a listening test harness;
#   --listen HOST:PORT:   accept one client at a time, keep state across
#                         reconnects; prints "LISTENING host:port" once bound.
#
# NOTE: this file must not define top-level local variables: they would live
# in TOPLEVEL_BINDING, i.e. in the user's namespace.  Everything is inside
# the EvalerServer module.

require 'json'

module EvalerServer
  MAX_LINE = 64 << 20       # largest accepted packet line, bytes
  OUTPUT_CAP = begin        # per stream and cell, bytes
    Integer(ENV.fetch('EVALER_OUTPUT_CAP', (8 << 20).to_s))
  rescue ArgumentError
    8 << 20
  end
  VALUE_CAP = 64 << 10      # inspect of the cell's value, characters
  DRAIN_GRACE = 0.1         # seconds to wait for EOF on the capture pipes
  EXIT_GRACE = 1.0          # seconds allowed for at_exit handlers on exit
  SERVER_FILE = __FILE__
  SERVER_PID = Process.pid
  UTF8 = Encoding::UTF_8
  BINDING = TOPLEVEL_BINDING
  # Code below refers to the module through this constant: main() removes
  # the top-level EvalerServer constant so that user code does not see it.
  SERVER = self

  class Oversized < StandardError; end
  class ClientGone < StandardError; end

  # Raises Interrupt in the main thread only while a cell runs; idle SIGINTs
  # (an INTERRUPT racing with the end of a cell) are dropped.
  SIGINT_HANDLER = proc { raise Interrupt if SERVER.in_cell }

  class << self
    attr_accessor :in_cell, :transport
  end
  @in_cell = false
  @transport = nil

  # ------------------------------------------------------------------------
  # Transport: newline-delimited JSON over a stream IO

  class Transport
    attr_reader :io

    def initialize(io)
      @io = io
      @io.binmode
      @io.sync = true
      @buf = String.new(capacity: 1 << 16, encoding: Encoding::BINARY)
      @scan = 0
    end

    # Next line without its newline; nil at EOF; raises Oversized.
    def readline
      loop do
        i = @buf.index("\n", @scan)
        if i
          line = @buf.byteslice(0, i)
          @buf = @buf.byteslice(i + 1, @buf.bytesize - i - 1)
          @scan = 0
          return line
        end
        @scan = @buf.bytesize
        raise Oversized if @buf.bytesize > MAX_LINE

        data = begin
          @io.readpartial(@buf.bytesize > (1 << 16) ? 1 << 20 : 1 << 16)
        rescue EOFError, IOError, SystemCallError
          nil
        end
        unless data
          return nil if @buf.empty?

          line = @buf
          @buf = String.new(encoding: Encoding::BINARY)
          @scan = 0
          raise Oversized if line.bytesize > MAX_LINE

          return line
        end
        @buf << data
      end
    end

    def send(obj)
      @io.write(JSON.generate(obj) << "\n")
    rescue IOError, SystemCallError => e
      raise ClientGone, e.message
    end

    # Make the peer see EOF now, even if a forked child holds the fd.
    def shutdown
      require 'socket'
      (@io.is_a?(BasicSocket) ? @io : BasicSocket.for_fd(@io.fileno).tap { |s| s.autoclose = false }).shutdown
    rescue StandardError, LoadError
      nil
    end

    def close
      @io.close
    rescue StandardError
      nil
    end
  end

  # ------------------------------------------------------------------------
  # fd-level output capture: fds 1 and 2 go to per-cell pipes drained by one
  # persistent reader thread.

  class Capture
    attr_accessor :truncated

    def initialize
      @real_out = STDOUT.dup
      @real_err = STDERR.dup
      @go = Queue.new
      @mutex = Mutex.new
      @cv = ConditionVariable.new
      @finished = false
      @wake_r, @wake_w = IO.pipe
      @thread = Thread.new { reader_loop }
      @thread.report_on_exception = false
    end

    def real_out
      @real_out
    end

    def start
      @chunks = [[], []]
      @sizes = [0, 0]
      @truncated = false
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      STDOUT.reopen(w1)
      STDERR.reopen(w2)
      w1.close
      w2.close
      STDOUT.sync = true
      STDERR.sync = true
      @fds = [r1, r2]
      @go << true
    end

    # Restore fds 1/2; returns [stdout bytes, stderr bytes, truncated].
    def stop
      STDOUT.reopen(@real_out)
      STDERR.reopen(@real_err)
      STDOUT.sync = true
      STDERR.sync = true
      @mutex.synchronize do
        deadline = clock + DRAIN_GRACE
        until @finished
          left = deadline - clock
          break if left <= 0

          @cv.wait(@mutex, left)
        end
        unless @finished
          # A background process still holds a write end: stop waiting.
          @wake_w.write('x')
          @cv.wait(@mutex) until @finished
        end
        @finished = false
      end
      [@chunks[0].join, @chunks[1].join, @truncated]
    end

    private

    def clock
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def reader_loop
      loop do
        @go.pop
        fds = @fds
        begin
          loop { break unless @wake_r.read_nonblock(4096, exception: false).is_a?(String) }
          live = { fds[0] => 0, fds[1] => 1 }
          until live.empty?
            ready, = IO.select(live.keys + [@wake_r])
            break if ready.include?(@wake_r)

            ready.each do |io|
              data = io.read_nonblock(1 << 16, exception: false)
              next if data == :wait_readable

              i = live[io]
              if data.nil?
                live.delete(io)
                next
              end
              room = OUTPUT_CAP - @sizes[i]
              if data.bytesize > room
                @truncated = true
                data = room.positive? ? data.byteslice(0, room) : nil
              end
              if data
                @chunks[i] << data
                @sizes[i] += data.bytesize
              end
            end
          end
        rescue Exception # rubocop:disable Lint/RescueException
          nil
        ensure
          fds.each { |io| io.close rescue nil } # rubocop:disable Style/RescueModifier
          @mutex.synchronize do
            @finished = true
            @cv.signal
          end
        end
      end
    end
  end

  # ------------------------------------------------------------------------
  # The session

  class Session
    def initialize
      @count = 0
      @capture = Capture.new
      @user_sigint = nil
      @stdout = STDOUT
    end

    attr_reader :capture

    def run(code)
      @count += 1
      fname = "<cell-#{@count}>"
      $stdout = STDOUT
      $stderr = STDERR
      $stdin = STDIN
      Signal.trap('INT', @user_sigint) if @user_sigint
      status = 'ok'
      value = nil
      exit_code = nil
      extra_err = +''
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      @capture.start
      begin
        begin
          SERVER.in_cell = true
          result = BINDING.eval(code, fname, 1)
          unless result.nil?
            BINDING.local_variable_set(:_, result)
            r = result.inspect
            r = r.to_s unless r.is_a?(String)
            if r.length > VALUE_CAP
              r = "#{r[0, VALUE_CAP]}..."
              @capture.truncated = true
            end
            value = r
          end
        ensure
          SERVER.in_cell = false
        end
      rescue SystemExit => e
        exit!(e.status) if Process.pid != SERVER_PID # a forked child leaving
        status = 'exited'
        exit_code = e.status
      rescue Interrupt => e
        status = 'interrupted'
        extra_err = SERVER.format_exception(e)
      rescue SignalException
        raise                                        # SIGTERM & co: die as Ruby does
      rescue Exception => e # rubocop:disable Lint/RescueException
        status = 'error'
        extra_err = SERVER.format_exception(e)
      end
      SERVER.in_cell = false
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
      exit!(0) if Process.pid != SERVER_PID # a forked child fell off its cell
      flush_all
      out, err, truncated = @capture.stop
      previous = Signal.trap('INT', SIGINT_HANDLER)
      @user_sigint = previous.equal?(SIGINT_HANDLER) ? nil : previous
      reply = {
        'type' => 'RESULT',
        'stdout' => SERVER.text(out),
        'stderr' => SERVER.text(err) + SERVER.text(extra_err),
        'status' => status
      }
      reply['value'] = SERVER.text(value) unless value.nil?
      reply['time'] = elapsed
      reply['exit_code'] = exit_code unless exit_code.nil?
      reply['truncated'] = true if truncated
      [reply, exit_code]
    end

    private

    def flush_all
      [$stdout, $stderr, STDOUT, STDERR].each do |io|
        io.flush
      rescue StandardError
        nil
      end
      # printf from C extensions loaded through Fiddle (rare): flush C stdio.
      return unless defined?(::Fiddle::Function)

      begin
        @fflush ||= ::Fiddle::Function.new(::Fiddle::Handle::DEFAULT['fflush'],
                                           [::Fiddle::TYPE_VOIDP], ::Fiddle::TYPE_INT)
        @fflush.call(nil)
      rescue StandardError
        nil
      end
    end
  end

  module_function

  def text(bytes)
    s = bytes.dup.force_encoding(UTF8)
    s.valid_encoding? ? s : s.scrub("\uFFFD")
  end

  def user_frames(backtrace)
    (backtrace || []).reject { |l| l.start_with?("#{SERVER_FILE}:") }
  end

  # The exception as Ruby prints an uncaught one, without the server's frames.
  def format_exception(exc)
    seen = {}
    e = exc
    while e && !seen[e.object_id]
      seen[e.object_id] = true
      begin
        e.set_backtrace(user_frames(e.backtrace))
      rescue StandardError
        nil
      end
      e = e.cause
    end
    bt = exc.backtrace
    if bt && !bt.empty?
      exc.full_message(highlight: false, order: :top)
    else
      msg = exc.message.to_s
      cls = exc.class.to_s
      return "#{cls}\n" if msg.empty? || msg == cls

      first, rest = msg.split("\n", 2)
      "#{first} (#{cls})\n#{rest ? "#{rest.chomp}\n" : ''}"
    end
  rescue Exception # rubocop:disable Lint/RescueException
    "#{exc.class}\n"
  end

  def error(message)
    { 'type' => 'Error', 'value' => message }
  end

  # Serve one connection.  Returns nil at EOF/oversize, or [:exit, code].
  def serve(session, transport)
    loop do
      line = begin
        transport.readline
      rescue Oversized
        begin
          transport.send(error("packet too large: line exceeds #{MAX_LINE} bytes; closing the connection"))
        rescue ClientGone
          nil
        end
        return nil
      end
      return nil if line.nil?

      line = line.chomp("\r")
      next if line.strip.empty?

      reply = handle(session, transport, line)
      return reply if reply.is_a?(Array)
      next if reply.nil?

      begin
        transport.send(reply)
      rescue ClientGone
        return nil
      end
    end
  end

  def handle(session, transport, line)
    line.force_encoding(UTF8)
    return error('invalid JSON: packet is not valid UTF-8') unless line.valid_encoding?

    pkt = begin
      JSON.parse(line)
    rescue JSON::ParserError => e
      return error("invalid JSON: #{text(e.message.to_s)[0, 200]}")
    end
    return error("packet must be a JSON object, got #{pkt.class}") unless pkt.is_a?(Hash)

    kind = pkt['type']
    return error('packet has no string "type" field') unless kind.is_a?(String)

    case kind
    when 'RUN', 'RUNANDKILL'
      code = pkt['code']
      return error(%(#{kind} packet needs a string "code" field)) unless code.is_a?(String)

      reply, exit_code = session.run(code)
      begin
        transport.send(reply)
      rescue ClientGone
        return nil if exit_code.nil? && kind == 'RUN'
      end
      return [:exit, exit_code] unless exit_code.nil?
      return [:exit, 0] if kind == 'RUNANDKILL'

      nil
    when 'PING'
      { 'type' => 'CONNECTION-OK' }
    when 'KILL'
      exit!(0)
    when 'INTERRUPT'
      nil # idle: nothing to interrupt
    else
      error("unknown packet type #{kind.inspect}")
    end
  end

  def parse_hostport(str)
    m = /\A\[?(.*?)\]?:(\d+)\z/.match(str) or raise ArgumentError, "expected HOST:PORT, got #{str.inspect}"
    [m[1].empty? ? '127.0.0.1' : m[1], Integer(m[2], 10)]
  end

  def usage(msg)
    warn "server.rb: #{msg}\nusage: server.rb [--listen HOST:PORT | --connect HOST:PORT]" \
         '  (default: socket on fd $EVALER_FD, else 3)'
    exit!(2)
  end

  def ensure_std_fds
    [[STDOUT, 1], [STDERR, 2]].each do |io, fd|
      IO.for_fd(fd, autoclose: false).stat
    rescue SystemCallError, IOError
      io.reopen(File::NULL, 'w')
    end
    begin
      STDIN.reopen(File::NULL, 'r')
    rescue SystemCallError, IOError
      r, w = IO.pipe
      w.close
      STDIN.reopen(r)
      r.close
    end
    STDOUT.sync = true
    STDERR.sync = true
  end

  # With --disable-gems (fast start) RubyGems is not loaded.  Wrap
  # Kernel#require so that a require that fails loads RubyGems once and tries
  # again (RubyGems then wraps this wrapper as its gem_original_require).
  def install_lazy_rubygems
    return if defined?(::Gem)

    ::Kernel.module_eval do
      alias_method :__evaler_require, :require
      private :__evaler_require
      define_method(:require) do |path|
        __evaler_require(path)
      rescue LoadError
        raise if defined?(::Gem)

        begin
          __evaler_require('rubygems')
        rescue LoadError
          raise
        end
        require(path)
      end
      private :require
    end
  end

  def exit_process(session, transport, code)
    transport.shutdown
    Thread.new do
      sleep EXIT_GRACE
      exit!(code)
    end
    session.capture.real_out.flush rescue nil # rubocop:disable Style/RescueModifier
    exit(code) # at_exit handlers run; other threads are killed
  end

  def main(argv)
    mode = nil
    addr = nil
    args = argv.dup
    until args.empty?
      a = args.shift
      case a
      when '--listen', '--connect'
        usage("#{a} needs HOST:PORT") if args.empty?
        mode = a[2..]
        addr = args.shift
      when /\A--(listen|connect)=(.*)\z/
        mode = Regexp.last_match(1)
        addr = Regexp.last_match(2)
      else
        usage("unknown argument #{a.inspect}")
      end
    end
    begin
      addr = parse_hostport(addr) if addr
    rescue ArgumentError => e
      usage(e.message)
    end

    proto = nil
    if mode.nil?
      begin
        fd = Integer(ENV.fetch('EVALER_FD', '3'), 10)
        io = IO.for_fd(fd, 'r+b', autoclose: true)
        io.stat
        # Move it out of the way of user fds; close-on-exec.
        high = io.fcntl(1030, 64) # F_DUPFD_CLOEXEC
        io.close if fd > 2
        proto = IO.for_fd(high, 'r+b', autoclose: true)
      rescue ArgumentError, SystemCallError => e
        usage("no protocol socket: EVALER_FD=#{ENV['EVALER_FD'].inspect}: #{e.message}")
      end
    end

    ensure_std_fds
    Signal.trap('INT', SIGINT_HANDLER)
    install_lazy_rubygems
    if Process.respond_to?(:_fork)
      Process.singleton_class.prepend(Module.new do
        def _fork
          pid = super
          SERVER.transport&.io&.close rescue nil if pid.zero? # rubocop:disable Style/RescueModifier
          pid
        end
      end)
    end
    session = Session.new
    ARGV.clear
    Object.send(:remove_const, :EvalerServer)

    if mode.nil?
      run_connection(session, Transport.new(proto))
      exit!(0)
    end

    require 'socket'
    if mode == 'connect'
      sock = TCPSocket.new(*addr)
      sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      run_connection(session, Transport.new(sock))
      exit!(0)
    end

    server = TCPServer.new(*addr)
    _, port, host, = server.addr
    shown = host.include?(':') ? "[#{host}]" : host
    session.capture.real_out.write("LISTENING #{shown}:#{port}\n")
    session.capture.real_out.flush
    loop do
      conn = server.accept
      conn.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      run_connection(session, Transport.new(conn))
    end
  end

  def run_connection(session, transport)
    SERVER.transport = transport
    outcome = serve(session, transport)
    exit_process(session, transport, outcome[1]) if outcome.is_a?(Array)
    transport.close
    SERVER.transport = nil
  end
end

EvalerServer.main(ARGV)
