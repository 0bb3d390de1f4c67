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
  EXIT_GRACE = 2.0          # seconds allowed for at_exit handlers on exit
  # Under evaler's supervisor: say STOPPED as soon as SIGINT has stopped a
  # cell, before formatting its backtrace.
  STOP_ACK = ENV['EVALER_STOP_ACK'] == '1'
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
  # fd-level output capture.  fds 1 and 2 always point into pipes drained by
  # one persistent reader thread: while a cell runs, that cell's own pipes
  # (the end of its output is their EOF, awaited DRAIN_GRACE at most since a
  # background process may hold them); between cells, two idle pipes.  All
  # that is read goes into one capped buffer per stream, which each RESULT
  # takes: output written between cells (background threads, processes)
  # shows at the start of the next cell's output instead of reaching the
  # server's own stdout/stderr (capped by the supervisor).  Pipes of earlier
  # cells still held by background processes keep being drained (up to
  # MAX_LINGER), so those processes don't die of SIGPIPE.

  class Capture
    MAX_LINGER = 16

    attr_accessor :truncated
    attr_reader :real_out, :fd2

    def initialize
      @real_out = STDOUT.dup
      @real_err = STDERR.dup
      # Our own handles on fds 1 and 2 for the dup2s: they stay usable even
      # if the user closes STDOUT/STDERR.
      @fd1 = IO.for_fd(1, 'w', autoclose: false)
      @fd2 = IO.for_fd(2, 'w', autoclose: false)
      @fd1.sync = true
      @fd2.sync = true
      @mutex = Mutex.new # guards chunks/sizes/truncated/cmds/cell_finished
      @cv = ConditionVariable.new
      @cmds = []
      @cell_finished = true
      @cell_pending = false
      @wake_r, @wake_w = IO.pipe
      reset
      idle_r1, @idle_w1 = IO.pipe
      idle_r2, @idle_w2 = IO.pipe
      @streams = { idle_r1 => 0, idle_r2 => 1 } # the reader thread's
      @select_list = nil
      @rbuf = String.new(capacity: 1 << 16, encoding: Encoding::BINARY)
      @cell = []
      @linger = []
      @fd1.reopen(@idle_w1)
      @fd2.reopen(@idle_w2)
      @thread = Thread.new { reader_loop }
      @thread.report_on_exception = false
    end

    def start
      r1, w1 = IO.pipe
      begin
        r2, w2 = IO.pipe
      rescue SystemCallError, IOError
        r1.close
        w1.close
        raise
      end
      @fd1.reopen(w1)
      @fd2.reopen(w2)
      w1.close
      w2.close
      [STDOUT, STDERR].each do |io|
        io.sync = true unless io.closed?
      end
      @mutex.synchronize { @cell_finished = false }
      command([:cell, r1, r2])
    end

    # Back to the idle pipes; [stdout, stderr, truncated] since the last take.
    def stop
      @fd1.reopen(@idle_w1)
      @fd2.reopen(@idle_w2)
      @mutex.synchronize do
        deadline = clock + DRAIN_GRACE
        until @cell_finished
          left = deadline - clock
          break if left <= 0

          @cv.wait(@mutex, left)
        end
        unless @cell_finished
          @cmds << [:release]
          @wake_w.write('x')
          @cv.wait(@mutex) until @cell_finished
        end
      end
      take
    end

    def take
      @mutex.synchronize do
        out = [@chunks[0], @chunks[1], @truncated]
        reset
        out
      end
    end

    private

    def reset
      # One string per stream, appended to by the reader thread.  (The reader
      # reads into one reused buffer: allocating in that thread makes glibc
      # give it its own malloc arena, ~7 MiB of RSS.)
      @chunks = [String.new(encoding: Encoding::BINARY), String.new(encoding: Encoding::BINARY)]
      @sizes = [0, 0]
      @truncated = false
    end

    def command(cmd)
      @mutex.synchronize { @cmds << cmd }
      @wake_w.write('x')
    end

    def clock
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def drop(io)
      @streams.delete(io)
      @select_list = nil
      io.close
    rescue IOError
      nil
    end

    # Read what already sits in the pipes now, not at the next select: at a
    # cell's start, so that output written between cells comes before the
    # cell's own; at its end, so that it is in this RESULT.
    def drain
      @streams.each do |io, i|
        16.times do
          data = io.read_nonblock(1 << 16, @rbuf, exception: false)
          break unless data.is_a?(String) # :wait_readable, or nil (EOF: next select)

          take_in(i, data)
        end
      end
    end

    def finish_cell
      drain
      @cell_pending = false
      @mutex.synchronize do
        @cell_finished = true
        @cv.broadcast
      end
    end

    def take_in(index, data)
      @mutex.synchronize do
        room = OUTPUT_CAP - @sizes[index]
        if data.bytesize > room
          @truncated = true
          data = room.positive? ? data.byteslice(0, room) : nil
        end
        if data
          @chunks[index] << data
          @sizes[index] += data.bytesize
        end
      end
    end

    def run_commands
      loop { break unless @wake_r.read_nonblock(4096, @rbuf, exception: false).is_a?(String) }
      cmds = @mutex.synchronize do
        c = @cmds
        @cmds = []
        c
      end
      cmds.each do |cmd|
        case cmd[0]
        when :cell
          drain
          cmd[1..].each_with_index do |r, i|
            @streams[r] = i
            @select_list = nil
            @cell << r
          end
          @cell_pending = true
        when :release
          next unless @cell_pending

          @linger.concat(@cell)
          @cell.clear
          drop(@linger.shift) while @linger.size > MAX_LINGER
          finish_cell
        end
      end
    end

    def reader_loop
      loop do
        ready, = IO.select(@select_list ||= @streams.keys << @wake_r)
        ready.each do |io|
          if io.equal?(@wake_r)
            run_commands
            next
          end
          i = @streams[io]
          next if i.nil?

          data = io.read_nonblock(1 << 16, @rbuf, exception: false)
          next if data == :wait_readable

          if data.nil? # EOF
            drop(io)
            if @cell.delete(io)
              finish_cell if @cell.empty? && @cell_pending
            else
              @linger.delete(io)
            end
            next
          end
          take_in(i, data)
        end
      rescue Exception # rubocop:disable Lint/RescueException
        nil # never let the reader die
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
      @exiting = nil            # [fields, code] once the process must exit
      @exit_lock = Mutex.new    # who sends the last RESULT
    end

    attr_reader :capture

    # Runs one cell and returns its RESULT.  When the process must exit after
    # it (the cell called exit, or `final`: RUNANDKILL) it does not return:
    # it calls Kernel#exit, so the user's at_exit handlers run with their
    # output captured, and at_exit_hook (registered first, so run last) sends
    # the RESULT.
    def run(code, final = false)
      @count += 1
      fname = "<cell-#{@count}>"
      $stdout = STDOUT.closed? ? (@out ||= IO.new(1, 'w', autoclose: false).tap { |i| i.sync = true }) : STDOUT
      $stderr = STDERR.closed? ? (@err ||= IO.new(2, 'w', autoclose: false).tap { |i| i.sync = true }) : STDERR
      $stdin = STDIN
      Signal.trap('INT', @user_sigint) if @user_sigint
      status = 'ok'
      value = nil
      exit_code = nil
      extra_err = +''
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      fallback = nil
      begin
        @capture.start
      rescue SystemCallError, IOError => e
        # e.g. EMFILE: the cell used up the fds.  Run it anyway (it may be the
        # one that frees them), capturing Ruby-level output only.
        require 'stringio'
        fallback = [StringIO.new, StringIO.new]
        $stdout, $stderr = fallback
        extra_err << "evaler: output of the cell may be incomplete (#{e.message})\n"
      end
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
        status = 'exited'
        exit_code = e.status
      rescue Interrupt => e
        status = 'interrupted'
        if STOP_ACK && Process.pid == SERVER_PID && SERVER.transport
          begin
            SERVER.transport.send({ 'type' => 'STOPPED' })
          rescue ClientGone
            nil
          end
        end
        extra_err << SERVER.format_exception(e)
      rescue SignalException
        raise                                        # SIGTERM & co: die as Ruby does
      rescue Exception => e # rubocop:disable Lint/RescueException
        status = 'error'
        extra_err << SERVER.format_exception(e)
      end
      SERVER.in_cell = false
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
      if Process.pid != SERVER_PID
        # A child forked by the cell (block-less fork) got back here: finish
        # it as a plain interpreter would, never let it touch the protocol.
        flush_all
        begin
          @capture.fd2.write(extra_err) unless extra_err.empty?
        rescue StandardError
          nil
        end
        exit!(exit_code || (status == 'ok' ? 0 : 1))
      end
      previous = Signal.trap('INT', SIGINT_HANDLER)
      @user_sigint = previous.equal?(SIGINT_HANDLER) ? nil : previous
      fields = [status, value, elapsed, exit_code, extra_err]
      leave = exit_code || (final ? 0 : nil)
      if leave
        @exiting = [fields, leave, fallback]
        start_watchdog
        exit(leave) # -> user at_exit handlers -> at_exit_hook
      end
      SERVER.reply(*collect(fallback), *fields)
    end

    # Registered with at_exit before any cell runs, so it runs last.
    def at_exit_hook
      return if @exiting.nil? || Process.pid != SERVER_PID
      return unless @exit_lock.try_lock

      fields, _code, fallback = @exiting
      send_last(SERVER.reply(*collect(fallback), *fields))
    end

    private

    def collect(fallback)
      flush_all
      return @capture.stop unless fallback

      out, err, truncated = @capture.take # fd-level output went to the idle pipes
      [out + fallback[0].string.b, err + fallback[1].string.b, truncated]
    end

    def send_last(reply)
      transport = SERVER.transport
      return unless transport

      begin
        transport.send(reply)
      rescue ClientGone
        nil
      end
      transport.shutdown
    end

    # Exit after EXIT_GRACE even if an at_exit handler hangs, sending the
    # RESULT with what was captured so far.
    def start_watchdog
      Thread.new do
        sleep EXIT_GRACE
        if @exit_lock.try_lock
          fields, code, fallback = @exiting
          out, err, truncated = fallback ? ['', '', false] : @capture.take
          reply = SERVER.reply(out, err, truncated, *fields)
          reply['stderr'] += "evaler: at_exit handlers still running after #{EXIT_GRACE}s, exiting\n"
          send_last(reply)
          exit!(code)
        end
      end
    end

    public

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

  def reply(out, err, truncated, status, value, elapsed, exit_code, extra_err)
    r = {
      'type' => 'RESULT',
      'stdout' => text(out),
      'stderr' => text(err) + text(extra_err),
      'status' => status
    }
    r['value'] = text(value) unless value.nil?
    r['time'] = elapsed
    r['exit_code'] = exit_code unless exit_code.nil?
    r['truncated'] = true if truncated
    r
  end

  # Serve one connection.  Returns at EOF/oversize; exits the process on
  # exit/RUNANDKILL/KILL.
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
      return nil if reply == :gone
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

      reply = begin
        session.run(code, kind == 'RUNANDKILL') # exits the process if it must
      rescue StandardError => e # a bug of ours: say so, keep serving
        error("internal server error: #{e.class}: #{e.message}")
      end
      begin
        transport.send(reply)
      rescue ClientGone
        return :gone
      end
      exit(0) if kind == 'RUNANDKILL' # only after an internal error
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
    if [Encoding::US_ASCII, Encoding::ASCII_8BIT].include?(Encoding.default_external)
      # C/POSIX locale (typical in the sandbox): read files as UTF-8, as
      # Python's UTF-8 mode does.
      verbose = $VERBOSE
      $VERBOSE = nil
      Encoding.default_external = UTF8
      $VERBOSE = verbose
    end
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
    at_exit { session.at_exit_hook }
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
    serve(session, transport)
    transport.close
    SERVER.transport = nil
  end
end

EvalerServer.main(ARGV)
