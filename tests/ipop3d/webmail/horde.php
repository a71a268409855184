<?php
// Runs Horde's own poppassd driver (Debian php-horde-passwd: passwd/lib/Driver/Poppassd.php,
// its base class passwd/lib/Driver.php and Passwd_Exception, on Horde_Exception from
// php-horde-exception) once, as Horde's passwd application does (the driver made with the
// backend's host and port, then changePassword), and prints what happened.
//
// Environment: WEBMAIL_ROOT (where the packages are unpacked), WEBMAIL_PORT (the poppassd
// server on 127.0.0.1), WEBMAIL_USER, WEBMAIL_OLD, WEBMAIL_NEW.
// Output: `result=success`, or `result=exception`, `class=NAME` and `message=JSON`. Any PHP
// warning or notice is fatal (exit 3); a deprecation (PHP 8.2 flags the driver's undeclared
// `$_fp`) goes to stderr and the script goes on, as on a server. The driver's `_()` is PHP's
// own gettext.
//
// The stand-ins below replace only Horde's framework (php-horde-core, not unpacked): the
// username hook lookup, with no hook configured.

error_reporting(E_ALL);
set_error_handler(function ($no, $msg, $file, $line) {
    if ($no === E_DEPRECATED || $no === E_USER_DEPRECATED) {
        fwrite(STDERR, "horde.php: PHP deprecation: $msg at $file:$line\n");
        return true;
    }
    fwrite(STDERR, "horde.php: PHP error $no: $msg at $file:$line\n");
    exit(3);
});

function env($name)
{
    $value = getenv($name);
    if ($value === false) {
        fwrite(STDERR, "horde.php: $name is not set\n");
        exit(2);
    }
    return $value;
}

$root = env('WEBMAIL_ROOT');
$passwd = "$root/usr/share/horde/passwd/lib";
$php = "$root/usr/share/php";

// Horde's autoloading: Passwd_X_Y from the application's lib/X/Y.php, Horde_X_Y from the
// library tree's Horde/X/Y.php.
spl_autoload_register(function ($class) use ($passwd, $php) {
    $parts = explode('_', $class);
    if ($parts[0] === 'Passwd') {
        $file = $passwd . '/' . implode('/', array_slice($parts, 1)) . '.php';
    } else {
        $file = $php . '/' . implode('/', $parts) . '.php';
    }
    if (is_file($file)) {
        require_once $file;
    }
});

// Stand-in: Horde_Exception_HookNotSet, as php-horde-core declares it.
class Horde_Exception_HookNotSet extends Horde_Exception
{
}

// Stand-in: Horde::callHook, which with no hook configured throws HookNotSet (as
// Horde_Core_Hooks::callHook does); Passwd_Driver::changePassword then keeps the user name.
class Horde
{
    public static function callHook($hook, $args = array(), $app = 'horde')
    {
        throw new Horde_Exception_HookNotSet();
    }
}

$driver = new Passwd_Driver_Poppassd(array(
    'host' => '127.0.0.1',
    'port' => (int) env('WEBMAIL_PORT'),
));
try {
    $driver->changePassword(env('WEBMAIL_USER'), env('WEBMAIL_OLD'), env('WEBMAIL_NEW'));
    print "result=success\n";
} catch (Passwd_Exception $e) {
    print "result=exception\nclass=" . get_class($e) . "\n";
    print 'message=' . json_encode($e->getMessage(), JSON_UNESCAPED_SLASHES) . "\n";
}
