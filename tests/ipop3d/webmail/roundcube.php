<?php
// Runs Roundcube's own poppassd password driver (Debian roundcube-plugins:
// plugins/password/drivers/poppassd.php, with PEAR's Net_Socket) once, as the password
// plugin does (password::_load_driver, password::_save), and prints what it returned.
//
// Environment: WEBMAIL_ROOT (where the packages are unpacked), WEBMAIL_PORT (the poppassd
// server on 127.0.0.1), WEBMAIL_USER, WEBMAIL_OLD, WEBMAIL_NEW.
// Output: `result=success`, or `result=failure`, `code=N` and `message=JSON` (the reply text
// the driver quotes, when it quotes one). Any PHP warning or notice is fatal (exit 3); a
// deprecation (PHP 8.2 on this code) goes to stderr and the script goes on, as on a server.
//
// The stand-ins below replace only Roundcube's framework (roundcube-core, not unpacked):
// the plugin base class, the config lookup and the host-name substitution.

error_reporting(E_ALL);
set_error_handler(function ($no, $msg, $file, $line) {
    if ($no === E_DEPRECATED || $no === E_USER_DEPRECATED) {
        fwrite(STDERR, "roundcube.php: PHP deprecation: $msg at $file:$line\n");
        return true;
    }
    fwrite(STDERR, "roundcube.php: PHP error $no: $msg at $file:$line\n");
    exit(3);
});

function env($name)
{
    $value = getenv($name);
    if ($value === false) {
        fwrite(STDERR, "roundcube.php: $name is not set\n");
        exit(2);
    }
    return $value;
}

$root = env('WEBMAIL_ROOT');
$plugin = "$root/usr/share/roundcube/plugins/password";
// Net/Socket.php (php-net-socket) and the PEAR.php it requires (php-pear).
set_include_path("$root/usr/share/php");

// Stand-in: rcube_plugin, the base class of the plugin, so that the real password.php loads
// (for its PASSWORD_* result codes); nothing of the plugin object is used.
abstract class rcube_plugin
{
}

// Stand-in: rcmail::get_instance()->config->get(NAME, DEFAULT), Roundcube's config lookup,
// holding the settings README.md gives for apoppassd.
class rcmail_config_standin
{
    private $settings;

    public function __construct(array $settings)
    {
        $this->settings = $settings;
    }

    public function get($name, $default = null)
    {
        return array_key_exists($name, $this->settings) ? $this->settings[$name] : $default;
    }
}

class rcmail
{
    private static $instance;
    public $config;

    public static function get_instance()
    {
        if (!self::$instance) {
            self::$instance = new rcmail();
            self::$instance->config = new rcmail_config_standin([
                'password_driver' => 'poppassd',
                'password_pop_host' => '127.0.0.1',
                'password_pop_port' => (int) env('WEBMAIL_PORT'),
            ]);
        }
        return self::$instance;
    }
}

// Stand-in: rcube_utils::parse_host replaces %n, %t, %d, %h, %z and %s in a configured host
// name; a name without % comes back unchanged, and the test configures no other.
class rcube_utils
{
    public static function parse_host($name, $host = '')
    {
        if (!is_string($name) || strpos($name, '%') !== false) {
            fwrite(STDERR, "roundcube.php: the parse_host stand-in does no substitutions\n");
            exit(2);
        }
        return $name;
    }
}

require_once "$plugin/password.php";
require_once 'Net/Socket.php';

// As password::_load_driver loads the configured driver.
$driver = rcmail::get_instance()->config->get('password_driver', 'sql');
$class = "rcube_{$driver}_password";
include_once "$plugin/drivers/$driver.php";
if (!class_exists($class, false) || !method_exists($class, 'save')) {
    fwrite(STDERR, "roundcube.php: broken driver $driver\n");
    exit(2);
}
$driver = new $class;

// As password::_save calls it and reads its result.
$result = $driver->save(env('WEBMAIL_OLD'), env('WEBMAIL_NEW'), env('WEBMAIL_USER'));
$message = '';
if (is_array($result)) {
    $message = $result['message'];
    $result = $result['code'];
}
if ($result === PASSWORD_SUCCESS) {
    print "result=success\n";
} else {
    print "result=failure\ncode=$result\n";
    print 'message=' . json_encode($message, JSON_UNESCAPED_SLASHES) . "\n";
}
